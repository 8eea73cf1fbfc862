// Package test holds Hallmark's end-to-end tests: they build and run the
// real server and agent binaries (see testenv) and talk to them the way
// operators and workloads do — the CLIs, stock go-spiffe clients, and the
// Node API with a real TLS client.
package test
