// Package config reads the agent's HCL configuration file into a typed,
// validated Config with defaults applied. Decoding is strict: unknown keys,
// values of the wrong type, duplicate blocks and bad values are errors that
// name the file and line, and every problem is reported at once. The
// node_attestor and workload_attestor blocks are kept undecoded as
// hclconf.Blocks for their attestors to decode with hclconf.DecodeBlock.
//
// It must not import the agent's runtime packages or attestors; it only
// describes what they are to be built with.
package config
