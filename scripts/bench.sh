#!/usr/bin/env bash
# make bench: the benchmarks that carry the figures named in the issues.
# Ratios are measured in one run (the machines are noisy).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== CA: SVID issuance vs raw x509.CreateCertificate and vs the stdlib path it replaced (same run, interleaved)"
go test -run='^$' -bench='Interleaved|SignX509SVID$|SignX509SVIDRaw$|SignX509SVIDStdlib$|RawCreateCertificate' -benchtime=2s ./server/ca/
echo "== Server and agent internals"
go test -run='^$' -bench=. -benchtime=1s ./server/entrycache/ ./agent/cache/ ./attestors/unix/ ./server/datastore/sqlite/
echo "== The agent at its limit: key + CSR (vs x509.CreateCertificateRequest), agent CPU per FetchX509SVID (client in another process)"
go test -run='^$' -bench='NewKeyAndCSR' -benchtime=1s ./agent/manager/
go test -run='^$' -bench='FetchX509SVIDAgentCPU' -benchtime=20000x ./agent/workloadapi/
echo "== Real binaries: Workload API, propagation with 10k entries, bulk create, idle CPU / RSS"
go test -run='^$' -bench='FetchX509SVID$' -benchtime=5000x ./test/
go test -run='^$' -bench='FetchX509SVIDConcurrent' -benchtime=10000x ./test/
go test -run='^$' -bench='EntryToWorkload10k' -benchtime=200x ./test/
go test -run='^$' -bench='BulkCreate10kCLI' -benchtime=3x ./test/
go test -run='^$' -bench='Batch1000ToWatcher' -benchtime=5x ./test/
go test -run='^$' -bench='Idle' -benchtime=1x ./test/
echo "== Node API under an unauthenticated flood: 10k idle Attest streams + 20 × 15 MiB messages (RSS, goroutines, entry → SVID flooded/quiet)"
go test -run='^$' -bench='NodeAPIFlood' -benchtime=1x ./test/
echo "== PostgreSQL HA: 100k entries (idle CPU, restart → ready), entry on server A → SVID at server B's agent"
go test -run='^$' -bench='Postgres100k' -benchtime=200x ./test/
if ls sds/*_test.go >/dev/null 2>&1; then
  echo "== SDS"
  go test -run='^$' -bench=. -benchtime=1x ./sds/ || true
fi
