# Hallmark agent configuration.
#
# Every setting is shown with its default, except where marked "required".
# Unknown settings, values of the wrong type and duplicate blocks are
# errors: the agent refuses to start and names the file and line.

agent {
  # The trust domain of the server this agent talks to (required).
  # A bare name: "example.org", not "spiffe://example.org".
  trust_domain = "example.org"

  # The server's host:port (required).
  server_address = "127.0.0.1:8081"

  # The server's trust bundle, used to authenticate the server on first
  # contact only (afterwards the agent keeps the bundle the server gives it,
  # which follows CA rotations). One of trust_bundle_path, trust_bundle_url
  # and insecure_bootstrap = true is required; they are mutually exclusive.
  # The server keeps it current with a bundle_publisher block (a file, a
  # Kubernetes ConfigMap, an SSM parameter: docs/operations.md). The file is
  # read again before every attempt to attest, so a bundle fixed after a CA
  # rotation is picked up without a restart.
  trust_bundle_path = "./conf/bundle.pem"

  # Or download it before every attempt: an https URL (system roots), or
  # plain http to a loopback address only with
  # trust_bundle_url_allow_loopback_http = true. Redirects must satisfy the
  # same rule. At most 1 MiB.
  # trust_bundle_url = "https://bundle.example.org/example.org.pem"
  # trust_bundle_url_allow_loopback_http = false

  # Encoding of the bootstrap bundle (file or URL): "pem" (CERTIFICATE
  # blocks) or "spiffe" (a SPIFFE bundle document, JWKS with x509-svid keys).
  trust_bundle_format = "pem"

  # Trust whatever server answers on first contact. For tests only.
  insecure_bootstrap = false

  # Where the agent keeps its key, SVID and the cached bundle (required).
  # A running agent holds data_dir/hallmark-agent.lock: a second agent on
  # the same data_dir refuses to start.
  data_dir = "./data/agent"

  # Unix socket of the Workload API that workloads (and Envoy's SDS) use.
  # At most 107 bytes. The default depends on the user the agent runs as:
  # "/run/hallmark-agent/api.sock" for root,
  # "/tmp/hallmark-agent/public/api.sock" for any other user. The agent
  # creates the socket's directory with mode 0755 and refuses to start when
  # that directory is not its own or is writable by anyone else, or when a
  # directory above it belongs to another user or is writable by others
  # (sticky ones such as /tmp excepted). The same holds for the sds block's
  # socket_path.
  # socket_path = "/tmp/hallmark-agent/public/api.sock"

  # Unix socket of the agent's admin API; empty: none.
  admin_socket_path = ""

  # A single-use join token generated on the server, used for the
  # first attestation. The -joinToken flag overrides it. Without a
  # node_attestor block, node_attestor "join_token" is implied. A restarted
  # agent runs on the SVID saved in data_dir and needs no token; without a
  # usable saved SVID and without a token it stops and says so.
  join_token = ""

  # Logging: level "debug", "info", "warn" or "error"; format "text" or
  # "json"; log_file appends to a file (mode 0600) instead of stderr.
  log_level  = "info"
  log_format = "text"
  log_file   = ""
}

# The node attestor: how this agent proves which node it runs on. At most
# one; left out, it is "join_token". The label is the
# kind; the body holds that attestor's own settings (see its documentation).
node_attestor "join_token" {}
#
# Other kinds are documented in docs/tpm.md, docs/aws.md and
# docs/kubernetes.md. aws_iam signs the name of the server it attests to
# (spiffe://<trust_domain>/hallmark/server, or server_id, which must then
# equal the server's) into its request; k8s_psat sends the projected token,
# whose audience must be the server's (by default its SPIFFE ID).
# Replace the block above with one of these (documented in docs/tpm.md,
# docs/aws.md, docs/kubernetes.md):
#
# node_attestor "tpm" {
#   device    = "/dev/tpmrm0"  # or "unix:/run/swtpm/tpm.sock", "tcp:127.0.0.1:2321"
#   ak_type   = "ecc"          # or "rsa"
#   ek_type   = "rsa"          # or "ecc"; the agent ID derives from the EK
#   event_log = "/sys/kernel/security/tpm0/binary_bios_measurements"  # "none": send none
# }
# node_attestor "aws_iid" {
#   imds_endpoint = "http://169.254.169.254"
# }
# node_attestor "aws_nitro" {
#   device = "/dev/nsm"
# }
# node_attestor "aws_iam" {
#   sts_region        = "us-east-1"  # default $AWS_REGION, else us-east-1
#   sts_host          = ""           # default sts.<region>.amazonaws.com
#   ecs_task_metadata = false        # send ECS task metadata as unverified hints
#   ecs_metadata_uri  = ""           # default $ECS_CONTAINER_METADATA_URI_V4
#   server_id         = ""           # default spiffe://<trust_domain>/hallmark/server
# }
# node_attestor "k8s_psat" {
#   cluster    = "prod"  # the server's cluster block of the same name
#   token_path = "/var/run/secrets/tokens/hallmark-agent"
# }

# Workload attestors: how the agent finds out who a calling process is.
# Zero or more, one block per kind; the body holds that attestor's own
# settings (see its documentation). Whatever the attestors, a caller whose
# executable or credentials changed since it connected (exec, setuid,
# setgid) is refused; see docs/workload-attestation.md, which also says what
# each selector proves.
workload_attestor "unix" {
  # true adds unix:path: and unix:sha256: of the caller's executable. They
  # say which file the process was started from, not what code runs now:
  # any process of the same uid can ptrace it. Combine them with a uid.
  discover_workload_path = false
}

# Kubernetes workload attestation (k8s:ns:, k8s:sa:, k8s:pod-label:...): the
# agent asks the kubelet which pod a caller's container belongs to. See
# docs/kubernetes.md for every key.
#
# workload_attestor "k8s" {
#   kubelet_secure_port       = 10250
#   node_name_env             = "MY_NODE_NAME"
#   token_path                = "/var/run/secrets/kubernetes.io/serviceaccount/token"
#   kubelet_ca_path           = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
#   skip_kubelet_verification = false
# }

# Envoy SDS v3 (optional): always served on the Workload API socket; this
# block renames the default resources and can add an SDS-only socket for
# Istio. See docs/sds.md.
#
# sds {
#   default_svid_name              = "default"  # the caller's default SVID
#   default_bundle_name            = "ROOTCA"   # the agent's trust bundle
#   default_all_bundles_name       = "ALL"      # own and federated bundles
#   disable_spiffe_cert_validation = false      # bundles always as trusted_ca
#   file_dir                       = ""         # Istio file-root:/file-cert: names, read
#                                               # with the caller's rights; "": refused
#   socket_path                    = "/run/secrets/workload-spiffe-uds/socket"
#   allow_missing_security_header  = true       # SDS on the Workload API socket without
#                                               # workload.spiffe.io (as SPIRE)
#   socket_require_security_header = false      # on socket_path
# }

# Prometheus metrics and health (optional): GET /metrics, /live and /ready
# (ready: a valid agent SVID, neither evicted nor banned; otherwise 503 with
# the reason) on listen_address. No authentication: keep it on loopback. See
# docs/operations.md, "Health and metrics".
#
# telemetry {
#   listen_address = "127.0.0.1:9989"
# }
