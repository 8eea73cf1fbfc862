# Hallmark — see README.md. `make demo` and `make test` set up what they need.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
GO ?= go
# grpcnotrace drops gRPC's x/net/trace, whose html/template use makes the
# linker keep every exported method of every type: -8 MB per binary, -3 MiB
# of agent RSS (docs/performance.md, Footprint). Nothing here uses the trace.
BUILD_TAGS ?= grpcnotrace
PKGS := ./...
TEST_TIMEOUT ?= 25m

.PHONY: all build test demo bench bench-fleet lint deps proto race fuzz clean

all: build

build:
	$(GO) build -tags $(BUILD_TAGS) -o bin/ ./cmd/...

deps:
	@scripts/deps.sh

test: deps
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# The whole tree under the race detector, the end-to-end tests in test/
# included (their daemons are built with -race too, and a race report in a
# daemon's output fails the test that ran it: see test/testenv).
race: deps
	HALLMARK_RACE=1 $(GO) test -race -count=1 -timeout 40m $(PKGS)

demo: build
	@GO="$(GO)" scripts/demo.sh

bench: deps build
	@scripts/bench.sh

# Fleet load generator (docs/scale.md): FLEET_N simulated agents (default
# "100 300 1000", one run each) against FLEET_BACKEND ("sqlite": one
# server; "postgres": two servers behind a balancer; default both). The
# tables are appended to FLEET_OUT. PPROF=1 builds the server with the
# pprof tag and serves profiles on HALLMARK_PPROF_ADDR. Not part of `make test`.
FLEET_N ?= 100 300 1000
FLEET_BACKEND ?= sqlite postgres
FLEET_OUT ?= $(CURDIR)/bench-fleet.md
bench-fleet: deps
	@for be in $(FLEET_BACKEND); do for n in $(FLEET_N); do \
	  echo "== fleet: $$n agents, $$be"; \
	  FLEET_N=$$n FLEET_BACKEND=$$be FLEET_OUT=$(FLEET_OUT) HALLMARK_PPROF=$(PPROF) \
	  $(GO) test -count=1 -run '^$$' -bench '^BenchmarkFleet$$' -benchtime 1x -timeout 60m ./test/fleet/ || exit 1; \
	done; done; echo "tables appended to $(FLEET_OUT)"

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# Short fuzzing of every fuzz target (FUZZTIME each).
FUZZTIME ?= 10s
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

# Regenerate protobuf code; installs protoc (apt-get, as root) and the Go
# plugins at the versions the checked-in code was generated with.
proto:
	@scripts/proto.sh

clean:
	rm -rf bin .demo
