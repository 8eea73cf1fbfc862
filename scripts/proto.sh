#!/usr/bin/env bash
# Regenerates api/v1/*.pb.go with exactly the generator versions named in
# their headers, so that regenerated code differs only where the .proto
# files changed. Installs what is missing: protoc from Debian's
# protobuf-compiler (as root, with apt-get) and the Go plugins with
# `go install` into $(go env GOPATH)/bin.
set -euo pipefail

PROTOC_VERSION=3.21.12          # Debian bookworm's protobuf-compiler
PROTOC_GEN_GO=v1.36.12          # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC=v1.6.2       # google.golang.org/grpc/cmd/protoc-gen-go-grpc

cd "$(dirname "$0")/.."
gobin="$(go env GOPATH)/bin"
export PATH="$gobin:$PATH"

if ! command -v protoc >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "proto: installing protobuf-compiler"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq protobuf-compiler >/dev/null || { apt-get update -qq >/dev/null && apt-get install -y -qq protobuf-compiler >/dev/null; }
  else
    echo "proto: protoc is missing — install it with: sudo apt-get install -y protobuf-compiler" >&2
    exit 1
  fi
fi
have=$(protoc --version | awk '{print $2}')
if [ "$have" != "$PROTOC_VERSION" ]; then
  echo "proto: protoc $have found, the checked-in code was generated with $PROTOC_VERSION; headers will differ" >&2
fi

# plugin_version BINARY prints the version a protoc plugin reports.
plugin_version() { "$1" --version 2>/dev/null | awk '{print $NF}'; }
if [ "$(plugin_version protoc-gen-go || true)" != "$PROTOC_GEN_GO" ]; then
  echo "proto: installing protoc-gen-go $PROTOC_GEN_GO"
  (cd / && go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO")
fi
if [ "$(plugin_version protoc-gen-go-grpc || true)" != "${PROTOC_GEN_GO_GRPC#v}" ]; then
  echo "proto: installing protoc-gen-go-grpc $PROTOC_GEN_GO_GRPC"
  (cd / && go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC")
fi

protoc --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  api/v1/*.proto
