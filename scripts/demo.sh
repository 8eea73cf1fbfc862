#!/usr/bin/env bash
# make demo: Hallmark's headline in well under a minute, one line per step.
#
#  1. a swtpm, manufactured with a private "TPM vendor" CA, attests the node:
#     EK certificate chained to the server's ek_ca_dir, credential activation,
#     a PCR quote checked against policy (no join token, no shared secret);
#  2. a workload gets its X.509-SVID over the SPIFFE Workload API;
#  3. Envoy's SDS (go-control-plane's client) gets the same identity;
#  4. the short-lived SVID rotates and the new one is pushed on the stream;
#  5. PCR 16 is extended (tpm2_pcrextend): the next re-attestation is refused,
#     naming the PCR, and the node loses its identity.
#
# Without swtpm (and not root, or apt-get failing) it says so in one line and
# shows steps 2-4 on a join-token node. DEMO_ATTESTOR=join_token forces that.
# On failure it prints the log tail of the daemon that failed (all of them if
# none exited) before removing the temporary directory; DEMO_KEEP=1 keeps it.
# HALLMARK_BIN names the directory of the binaries (default bin/).
# It runs as root or as any other user.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${HALLMARK_BIN:-$ROOT/bin}
GO=${GO:-go}
DIR=$(mktemp -d /tmp/hallmark-demo.XXXXXX)
T0=$(date +%s%N)

names=() pids=() logs=()
failed_step=""
step() { # step TAG text...: one line, with the time since the start.
  local tag=$1
  shift
  printf '%5.1fs  %-8s %s\n' "$(( ($(date +%s%N) - T0) / 1000000 ))e-3" "$tag" "$*"
}
fail() {
  echo "demo: FAILED: $*" >&2
  exit 1
}
cleanup() {
  local rc=$? i shown=0
  trap - EXIT
  if [ "$rc" -ne 0 ]; then
    # The daemons that exited are the likely cause: their log first.
    for i in "${!names[@]}"; do
      if ! kill -0 "${pids[$i]}" 2>/dev/null; then
        echo "demo: ${names[$i]} exited; the end of its log, ${logs[$i]#"$DIR"/}:" >&2
        tail -n 25 "${logs[$i]}" 2>/dev/null | sed 's/^/    /' >&2 || true
        shown=1
      fi
    done
    if [ "$shown" -eq 0 ]; then
      for i in "${!names[@]}"; do
        echo "demo: the end of the ${names[$i]} log, ${logs[$i]#"$DIR"/}:" >&2
        tail -n 15 "${logs[$i]}" 2>/dev/null | sed 's/^/    /' >&2 || true
      done
    fi
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -S "$DIR/tpm/tpm.sock.ctrl" ]; then
    swtpm_ioctl --unix "$DIR/tpm/tpm.sock.ctrl" -s >/dev/null 2>&1 ||
      { [ -f "$DIR/tpm/swtpm.pid" ] && kill "$(cat "$DIR/tpm/swtpm.pid")" 2>/dev/null; } || true
  fi
  wait 2>/dev/null || true
  if [ "${DEMO_KEEP:-}" = 1 ]; then
    echo "demo: logs and state kept in $DIR" >&2
  else
    rm -rf "$DIR"
    [ "$rc" -eq 0 ] || echo "demo: removed $DIR (DEMO_KEEP=1 keeps it)" >&2
  fi
  exit "$rc"
}
trap cleanup EXIT
# start NAME LOG CMD...: a daemon in the background, remembered for cleanup.
start() {
  local name=$1 log=$2
  shift 2
  "$@" >"$log" 2>&1 &
  names+=("$name") pids+=($!) logs+=("$log")
}
# wait_for SECONDS WHAT CMD...: poll CMD every 0.1 s until it succeeds.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && return 0
    for j in "${!names[@]}"; do
      kill -0 "${pids[$j]}" 2>/dev/null || fail "${names[$j]} exited while waiting for $what"
    done
    sleep 0.1
  done
  fail "timed out after ${secs} s waiting for $what"
}

for b in hallmark-server hallmark-agent; do
  [ -x "$BIN/$b" ] || fail "$BIN/$b is missing: run make build (make demo does)"
done
# The demo helper (test/cmd/hallmark-demo) is built here, never shipped
# (HALLMARK_DEMO_HELPER names a prebuilt one).
HELPER=${HALLMARK_DEMO_HELPER:-$DIR/hallmark-demo}
if [ -z "${HALLMARK_DEMO_HELPER:-}" ]; then
  "$GO" build -o "$HELPER" ./test/cmd/hallmark-demo || fail "building test/cmd/hallmark-demo"
fi

# --- Which node attestor: a swtpm when it can be had. ---
ATTESTOR=${DEMO_ATTESTOR:-tpm}
tpm_missing() {
  local t
  for t in swtpm swtpm_setup swtpm_localca swtpm_ioctl tpm2_pcrextend; do
    command -v "$t" >/dev/null 2>&1 || return 0
  done
  return 1
}
if [ "$ATTESTOR" = tpm ] && tpm_missing && [ "$(id -u)" -eq 0 ]; then
  step setup "installing swtpm and tpm2-tools (scripts/deps.sh tpm), as make test does"
  scripts/deps.sh tpm >"$DIR/deps.log" 2>&1 || true
fi
if [ "$ATTESTOR" = tpm ] && tpm_missing; then
  ATTESTOR=join_token
  why="run as root, or apt-get install -y swtpm swtpm-tools tpm2-tools"
  [ -s "$DIR/deps.log" ] && why="installing it failed: $(tail -n 1 "$DIR/deps.log")"
  step note "no swtpm here ($why): a join token attests the node instead, and the PCR step is skipped"
elif [ "$ATTESTOR" != tpm ]; then
  ATTESTOR=join_token
  step note "DEMO_ATTESTOR=$DEMO_ATTESTOR: a join token attests the node instead of a swtpm, and the PCR step is skipped"
fi

PORT=${DEMO_PORT:-$("$HELPER" freeport)}
ZERO=$(printf '0%.0s' $(seq 64))
S=(-socketPath "$DIR/server-admin/api.sock")
A=(-socketPath "$DIR/agent-public/api.sock")

# --- The "TPM": manufactured with our own vendor CA, then booted. ---
if [ "$ATTESTOR" = tpm ]; then
  CA_CN=$("$HELPER" manufacture -dir "$DIR/tpm") || fail "manufacturing the swtpm state (swtpm_setup)"
  swtpm socket --tpm2 --server "type=unixio,path=$DIR/tpm/tpm.sock" --ctrl "type=unixio,path=$DIR/tpm/tpm.sock.ctrl" \
    --tpmstate "dir=$DIR/tpm/state" --flags not-need-init,startup-clear --pid "file=$DIR/tpm/swtpm.pid" \
    --log "file=$DIR/swtpm.log" --daemon || fail "starting swtpm: $(tail -n 5 "$DIR/swtpm.log" 2>/dev/null)"
  names+=(swtpm) pids+=("$(cat "$DIR/tpm/swtpm.pid")") logs+=("$DIR/swtpm.log")
  DEVICE="unix:$DIR/tpm/tpm.sock"
  EK_HASH=$("$BIN/hallmark-agent" tpm ek-hash -device "$DEVICE") || fail "hallmark-agent tpm ek-hash on the swtpm"
  step tpm "swtpm manufactured: its EK certificate is signed by \"$CA_CN\", standing in for the TPM vendor; EK hash ${EK_HASH:0:16}…"
  NODE_ATTESTOR_SERVER="node_attestor \"tpm\" {
  ek_ca_dir = \"$DIR/tpm/ekca\"
  pcrs      = [16]
  pcr_policy {
    pcr    = 16
    values = [\"$ZERO\"]
  }
}"
  NODE_ATTESTOR_AGENT="node_attestor \"tpm\" {
  device    = \"$DEVICE\"
  event_log = \"none\"
}"
  AGENT_TTL=4s
else
  NODE_ATTESTOR_SERVER='node_attestor "join_token" {}'
  NODE_ATTESTOR_AGENT=""
  AGENT_TTL=1h
fi

# --- Server. ---
cat >"$DIR/server.hcl" <<HCL
server {
  trust_domain          = "example.org"
  bind_address          = "127.0.0.1"
  bind_port             = $PORT
  data_dir              = "$DIR/server"
  socket_path           = "$DIR/server-admin/api.sock"
  agent_svid_ttl        = "$AGENT_TTL"
  default_x509_svid_ttl = "1h"
  log_level             = "info"
}
$NODE_ATTESTOR_SERVER
HCL
start hallmark-server "$DIR/server.log" "$BIN/hallmark-server" run -config "$DIR/server.hcl"
wait_for 10 "hallmark-server to be ready" "$BIN/hallmark-server" healthcheck "${S[@]}"
"$BIN/hallmark-server" bundle show "${S[@]}" >"$DIR/bundle.pem"
if [ "$ATTESTOR" = tpm ]; then
  step server "hallmark-server on 127.0.0.1:$PORT (SQLite) trusts EKs certified by that CA and requires PCR 16 = 0…0 at every attestation and renewal"
else
  TOKEN=$("$BIN/hallmark-server" token generate "${S[@]}" -ttl 600 | awk '/^Token:/{print $2}')
  step server "hallmark-server on 127.0.0.1:$PORT (SQLite) issued a single-use join token for the node"
fi

# --- Agent: node attestation. ---
cat >"$DIR/agent.hcl" <<HCL
agent {
  trust_domain      = "example.org"
  server_address    = "127.0.0.1:$PORT"
  trust_bundle_path = "$DIR/bundle.pem"
  data_dir          = "$DIR/agent"
  socket_path       = "$DIR/agent-public/api.sock"
  log_level         = "info"
}
$NODE_ATTESTOR_AGENT
HCL
agent_args=(run -config "$DIR/agent.hcl")
[ "$ATTESTOR" = tpm ] || agent_args+=(-joinToken "$TOKEN")
start hallmark-agent "$DIR/agent.log" "$BIN/hallmark-agent" "${agent_args[@]}"
wait_for 15 "hallmark-agent to attest" "$BIN/hallmark-agent" healthcheck "${A[@]}"
LIST=$("$BIN/hallmark-server" agent list "${S[@]}")
if [ "$ATTESTOR" = tpm ]; then
  AGENT_ID="spiffe://example.org/agent/tpm/$EK_HASH"
  for want in "$AGENT_ID" "tpm:ek-issuer-cn:$CA_CN" "tpm:pcr:sha256:16:$ZERO"; do
    grep -qF -- "$want" <<<"$LIST" || fail "agent list lacks $want: $LIST"
  done
  step attest "node attested as …/agent/tpm/${EK_HASH:0:16}…: EK certificate chains to the vendor CA, the AK proved itself by credential activation, a fresh-nonce quote shows PCR 16 in policy"
  # Register by measured state: any node whose PCR 16 is golden.
  PARENT=spiffe://example.org/nodes/golden-pcr16
  "$BIN/hallmark-server" entry create "${S[@]}" -node -spiffeID "$PARENT" -selector "tpm:pcr:sha256:16:$ZERO" >/dev/null
  WHERE="on any node whose PCR 16 is golden"
else
  AGENT_ID="spiffe://example.org/agent/join_token/$TOKEN"
  grep -qF -- "$AGENT_ID" <<<"$LIST" || fail "agent list lacks $AGENT_ID: $LIST"
  step attest "node attested with the join token as $AGENT_ID (the token is now spent)"
  PARENT=$AGENT_ID
  WHERE="on this node"
fi

# --- Workload API. ---
WORKLOAD=spiffe://example.org/demo/web
SVID_TTL=4 # seconds: renewed at half-life, so the rotation shows in 2 s
"$BIN/hallmark-server" entry create "${S[@]}" -parentID "$PARENT" -spiffeID "$WORKLOAD" \
  -selector "unix:uid:$(id -u)" -x509SVIDTTL "$SVID_TTL" >/dev/null
serial_of() { awk -F'\t+' '/SVID Serial/{print $2; exit}'; }
fetch_out=""
fetch() { fetch_out=$("$BIN/hallmark-agent" api fetch x509 "${A[@]}" -timeout 2s 2>&1) && grep -qF "$WORKLOAD" <<<"$fetch_out"; }
wait_for 10 "the workload SVID" fetch
SERIAL1=$(serial_of <<<"$fetch_out")
step wlapi "the Workload API gave this process $WORKLOAD (serial ${SERIAL1:0:12}…, TTL $SVID_TTL s): uid $(id -u) by its kernel peer credentials, $WHERE"

# --- SDS, as Envoy asks. ---
SDS_OUT=$("$HELPER" sds "${A[@]}") || fail "SDS: $SDS_OUT"
read -r SDS_ID _ SDS_SERIAL _ <<<"${SDS_OUT//,/}"
[ "$SDS_ID" = "$WORKLOAD" ] || fail "SDS returned $SDS_OUT, want $WORKLOAD"
same="the same certificate"
[ "$SDS_SERIAL" = "$SERIAL1" ] || same="the same identity (already rotated)"
SDS_BUNDLE=${SDS_OUT#*bundle }
step sds "Envoy's SDS stream (go-control-plane's client, same socket) got $same, and the bundle $SDS_BUNDLE"

# --- Rotation, pushed. ---
WATCH=$(timeout 20 "$BIN/hallmark-agent" api watch "${A[@]}" -count 2) || fail "api watch: $WATCH"
mapfile -t serials < <(awk -F'\t+' '/SVID Serial/{print $2}' <<<"$WATCH")
after=$(awk '/^Received/{t=$NF} END{print t}' <<<"$WATCH")
[ "${#serials[@]}" -ge 2 ] && [ "${serials[0]}" != "${serials[1]}" ] || fail "no rotation pushed: $WATCH"
step rotate "the agent renewed the SVID at half-life and pushed serial ${serials[1]:0:12}… down the open stream after $after (no polling; api watch -count 2)"

if [ "$ATTESTOR" != tpm ]; then
  step skip "PCR change refusing the node: needs swtpm (see the note above)"
  step done "stopping server and agent; removing $DIR (with swtpm installed the demo shows the TPM steps)"
  exit 0
fi

# --- The machine's measured state changes. ---
DIGEST=$(printf 'demo: unapproved boot component' | sha256sum | cut -d' ' -f1)
tpm2_pcrextend -T "swtpm:path=$DIR/tpm/tpm.sock" "16:sha256=$DIGEST" >"$DIR/pcrextend.log" 2>&1 ||
  fail "tpm2_pcrextend: $(cat "$DIR/pcrextend.log")"
step pcr "PCR 16 extended with sha256(\"demo: unapproved boot component\") by tpm2_pcrextend, as a changed boot component would"
refused() { grep -F "Attestation rejected" "$DIR/server.log" | grep -qF "PCR 16"; }
wait_for 15 "the server to refuse the re-attestation" refused
REASON=$(grep -F "Attestation rejected" "$DIR/server.log" | grep -F "PCR 16" | head -n 1 | sed -n 's/.*reason="\([^"]*\)".*/\1/p')
[ -n "$REASON" ] || REASON=$(grep -F "Attestation rejected" "$DIR/server.log" | grep -F "PCR 16" | head -n 1)
step refuse "the next renewal's quote was refused by the server: $REASON"
evicted() { ! "$BIN/hallmark-server" agent list "${S[@]}" | grep -qF "$AGENT_ID"; }
wait_for 15 "the agent to be evicted" evicted
lost() { ! "$BIN/hallmark-agent" api fetch x509 "${A[@]}" -timeout 1s >/dev/null 2>&1; }
wait_for 20 "the workload to lose its SVID" lost
WHY=$("$BIN/hallmark-agent" healthcheck "${A[@]}" 2>&1 || true)
grep -qF "evicted" <<<"$WHY" && grep -qF "PCR 16" <<<"$WHY" || fail "agent healthcheck does not say evicted and PCR 16: $WHY"
step evict "the server evicted the node, refused its re-attestation for the same PCR, and its workload has no SVID any more (agent healthcheck: NOT_SERVING, evicted)"
step done "stopping swtpm, server and agent; removing $DIR"
