# /etc/hallmark/server.hcl for hallmark-server.service. See conf/server.hcl
# for every setting.
server {
  trust_domain = "example.org"
  bind_address = "0.0.0.0"
  bind_port    = 8081
  data_dir     = "/var/lib/hallmark/server"
  socket_path  = "/run/hallmark-server/api.sock"
  log_format   = "json"
}

datastore {
  type = "sqlite"
  path = "/var/lib/hallmark/server/datastore.sqlite3"
}

# TPM 2.0 machines: EK certificates must chain to a manufacturer root CA in
# ek_ca_dir (PEM files; the server refuses to start without a self-signed
# root there), and the event log must show Secure Boot enabled. Add
# ek_crl_dir = "/etc/hallmark/tpm-ek-crl" to refuse EKs the manufacturers
# have revoked (CRLs signed by those CAs, current at start-up). The sha1
# bank needs allow_sha1_pcr_bank = true.
node_attestor "tpm" {
  ek_ca_dir           = "/etc/hallmark/tpm-ek-ca"
  pcr_bank            = "sha256"
  require_secure_boot = true
}

# Machines without a TPM: single-use tokens from
# `hallmark-server token generate`.
node_attestor "join_token" {}

telemetry {
  listen_address = "127.0.0.1:9988"
}

# Every attestation, issuance and admin change; fsync before the decision
# is acted on.
audit {
  path  = "/var/log/hallmark/audit.jsonl"
  fsync = "always"
}
