// Package config reads the server's HCL configuration file into a typed,
// validated Config with defaults applied. Decoding is strict: unknown keys,
// values of the wrong type, duplicate blocks and bad values are errors that
// name the file and line, and every problem is reported at once. Each
// node_attestor block is kept undecoded as an hclconf.Block for its
// attestor to decode with hclconf.DecodeBlock.
//
// It must not import the server's runtime packages, the datastore backends
// or attestors; it only describes what they are to be built with.
package config
