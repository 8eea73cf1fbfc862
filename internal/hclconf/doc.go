// Package hclconf holds the small pieces that the server and agent
// configuration packages share: parsing HCL native syntax, strict decoding
// of block bodies (unknown keys and wrong value types are errors carrying
// file:line), the labelled Block that attestor configuration is kept in
// until its attestor decodes it, the Error type that reports every problem
// at once, duration parsing and logger construction.
//
// It must not import server/, agent/ or attestors/.
package hclconf
