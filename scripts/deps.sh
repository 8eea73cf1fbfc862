#!/usr/bin/env bash
# Installs (as root, via apt-get) or checks the system packages the tests
# need. Under CI=true a missing package is an error, never a skip.
# `deps.sh tpm` does only swtpm and tpm2-tools (what `make demo` needs).
set -euo pipefail
only=${1:-}

need=()
command -v swtpm >/dev/null 2>&1 || need+=(swtpm)
command -v swtpm_setup >/dev/null 2>&1 || need+=(swtpm-tools)
command -v swtpm_localca >/dev/null 2>&1 || need+=(swtpm-tools)
command -v tpm2_pcrextend >/dev/null 2>&1 || need+=(tpm2-tools)
if [ "$only" = tpm ]; then
  HALLMARK_TEST_POSTGRES=${HALLMARK_TEST_POSTGRES:-skipped}
fi
# PostgreSQL (internal/pgtest starts the cluster with pg_ctlcluster and
# creates its own login role); Debian's package creates a "main" cluster.
# Not needed when HALLMARK_TEST_POSTGRES names an external server.
if [ -z "${HALLMARK_TEST_POSTGRES:-}" ]; then
  command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql)
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
  command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
fi
if ! command -v go >/dev/null 2>&1; then
  echo "deps: Go is not installed (expected at /usr/local/go/bin/go)" >&2
  exit 1
fi

# The real Kubernetes API server (and etcd) of internal/kubetest: built
# once from source (several minutes) and cached outside the repository.
[ "$only" = tpm ] || "$(dirname "$0")/kube-apiserver.sh"

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
# Deduplicate.
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "deps: installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq "${need[@]}" >/dev/null
  exit 0
fi
echo "deps: missing Debian packages: ${need[*]} — install them with: sudo apt-get install -y ${need[*]}" >&2
exit 1
