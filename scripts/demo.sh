#!/usr/bin/env bash
# make demo: a server and an agent on the embedded defaults (SQLite, join
# token) in a temporary directory; this shell's uid gets an identity; a
# short TTL shows rotation. Everything started is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin
DIR=$(mktemp -d /tmp/hallmark-demo.XXXXXX)
PORT=${DEMO_PORT:-$(( 20000 + RANDOM % 20000 ))}
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting hallmark-server (trust domain example.org, SQLite in $DIR/server)"
cat >"$DIR/server.hcl" <<HCL
server {
  trust_domain          = "example.org"
  bind_address          = "127.0.0.1"
  bind_port             = $PORT
  data_dir              = "$DIR/server"
  socket_path           = "$DIR/server-admin/api.sock"
  default_x509_svid_ttl = "1h"
  log_level             = "info"
}
HCL
"$BIN/hallmark-server" run -config "$DIR/server.hcl" >"$DIR/server.log" 2>&1 &
pids+=($!)
S=(-socketPath "$DIR/server-admin/api.sock")
for _ in $(seq 1 100); do
  "$BIN/hallmark-server" healthcheck "${S[@]}" >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN/hallmark-server" healthcheck "${S[@]}"

step "Generating a join token and exporting the trust bundle"
TOKEN=$("$BIN/hallmark-server" token generate "${S[@]}" -ttl 600 | awk '/^Token:/{print $2}')
echo "hallmark-server token generate  ->  Token: $TOKEN"
"$BIN/hallmark-server" bundle show "${S[@]}" >"$DIR/bundle.pem"
echo "hallmark-server bundle show      ->  $DIR/bundle.pem"

step "Starting hallmark-agent (attests with the join token)"
cat >"$DIR/agent.hcl" <<HCL
agent {
  trust_domain      = "example.org"
  server_address    = "127.0.0.1:$PORT"
  trust_bundle_path = "$DIR/bundle.pem"
  data_dir          = "$DIR/agent"
  socket_path       = "$DIR/agent-public/api.sock"
  log_level         = "info"
}
HCL
"$BIN/hallmark-agent" run -config "$DIR/agent.hcl" -joinToken "$TOKEN" >"$DIR/agent.log" 2>&1 &
pids+=($!)
A=(-socketPath "$DIR/agent-public/api.sock")
for _ in $(seq 1 100); do
  "$BIN/hallmark-agent" healthcheck "${A[@]}" >/dev/null 2>&1 && break
  sleep 0.1
done
"$BIN/hallmark-agent" healthcheck "${A[@]}"
"$BIN/hallmark-server" agent list "${S[@]}"

AGENT_ID="spiffe://example.org/agent/join_token/$TOKEN"
step "Registering this shell's uid ($(id -u)) as spiffe://example.org/demo/workload, X.509-SVID TTL 10 s"
"$BIN/hallmark-server" entry create "${S[@]}" -parentID "$AGENT_ID" \
  -spiffeID spiffe://example.org/demo/workload -selector "unix:uid:$(id -u)" -x509SVIDTTL 10

step "Fetching the SVID over the Workload API (pushed to the agent; no polling)"
"$BIN/hallmark-agent" api fetch x509 "${A[@]}" -write "$DIR/svid"
first=$("$BIN/hallmark-agent" api fetch x509 "${A[@]}" | awk -F'\t+' '/SVID Serial/{print $2}')

step "Waiting for rotation at half-life (about 5 s)"
for _ in $(seq 1 80); do
  sleep 0.25
  now=$("$BIN/hallmark-agent" api fetch x509 "${A[@]}" | awk -F'\t+' '/SVID Serial/{print $2}')
  [ "$now" != "$first" ] && break
done
"$BIN/hallmark-agent" api fetch x509 "${A[@]}"
if [ "$now" != "$first" ]; then
  echo "Rotated: serial $first -> $now"
else
  echo "ERROR: the SVID did not rotate" >&2
  exit 1
fi

step "Verifying the SVID chains to the bundle with openssl"
if command -v openssl >/dev/null 2>&1; then
  openssl verify -CAfile "$DIR/bundle.pem" "$DIR/svid/svid.0.pem"
fi

step "Stopping server and agent"
echo "Logs were in $DIR (removed). Done."
