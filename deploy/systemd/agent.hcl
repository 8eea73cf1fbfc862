# /etc/hallmark/agent.hcl for hallmark-agent.service. See conf/agent.hcl
# for every setting.
agent {
  trust_domain      = "example.org"
  server_address    = "hallmark.example.org:8081"
  trust_bundle_path = "/etc/hallmark/bundle.pem"
  data_dir          = "/var/lib/hallmark/agent"
  socket_path       = "/run/hallmark-agent/api.sock"
  log_format        = "json"
}

node_attestor "tpm" {
  device = "/dev/tpmrm0"
}

workload_attestor "unix" {}

telemetry {
  listen_address = "127.0.0.1:9988"
}
