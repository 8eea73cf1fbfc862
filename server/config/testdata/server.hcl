# Hallmark server configuration.
#
# Every setting is shown with its default, except where marked "required".
# Unknown settings, values of the wrong type and duplicate blocks are
# errors: the server refuses to start and names the file and line.
# Durations are strings with a unit: "90s", "10m", "1h", "168h".

server {
  # The trust domain this server issues identities for (required).
  # A bare name: "example.org", not "spiffe://example.org".
  trust_domain = "example.org"

  # Address and port agents connect to. bind_address must be an IP address
  # ("0.0.0.0" or "::" to listen on every interface); bind_port 0 picks any
  # free port.
  bind_address = "127.0.0.1"
  bind_port    = 8081

  # Where the server keeps its keys and, by default, its database (required).
  # A running server holds data_dir/hallmark-server.lock: a second server on
  # the same data_dir refuses to start (HA servers share only PostgreSQL).
  data_dir = "./data/server"

  # Unix socket of the admin API used by the hallmark-server CLI commands
  # (entries, join tokens). At most 107 bytes. The default depends on the
  # user the server runs as: "/run/hallmark-server/api.sock" for root,
  # "/tmp/hallmark-server/private/api.sock" for any other user. The server
  # creates the socket's directory with mode 0700 and refuses to start when
  # that directory is not its own or grants anyone else access, or when a
  # directory above it belongs to another user or is writable by others
  # (sticky ones such as /tmp excepted). It never removes a socket another
  # server still answers on.
  # socket_path = "/tmp/hallmark-server/private/api.sock"

  # Key type of the signing CA: "ec-p256", "ec-p384" or "rsa-2048".
  ca_key_type = "ec-p256"

  # Lifetime of the signing CA certificate.
  ca_ttl = "168h"

  # Lifetime of workload X.509 SVIDs; must be shorter than ca_ttl.
  default_x509_svid_ttl = "1h"

  # Lifetime of agent SVIDs; must be shorter than ca_ttl.
  agent_svid_ttl = "1h"

  # While the datastore is unreachable (PostgreSQL restarting or failing
  # over), agents keep getting workload SVIDs signed for this long from the
  # agent records last read from it. Evictions always win; nothing new can
  # be created until the datastore is back.
  datastore_outage_grace = "10m"

  # Node API limits: what a client without an agent SVID (anyone who can
  # reach bind_port) can make the server hold. Agents presenting their SVID
  # renew, sync and sign without them. See docs/operations.md, "Node API
  # limits".
  #
  # One attestation, challenges included, must finish within
  # attestation_timeout; its first message (and the TLS handshake before
  # it) within attestation_first_message_timeout, which is also how long a
  # connection without an agent SVID may stay open without a call. The
  # first must not exceed the second.
  attestation_timeout               = "30s"
  attestation_first_message_timeout = "10s"

  # Attestations served at once, all sources together; more wait up to 1 s
  # for a slot, then are refused with ResourceExhausted (agents retry with
  # backoff).
  max_inflight_attestations = 64

  # A token bucket of attestations per source (an IPv4 address or an IPv6
  # /64): attestation_rate_per_source per second (fractions allowed),
  # bursts of attestation_burst_per_source. Behind NAT or a proxy that
  # hides client addresses, every agent shares one bucket: raise both.
  attestation_rate_per_source  = 5
  attestation_burst_per_source = 20

  # Connections without an agent SVID: in total, and per source (TLS
  # handshakes in progress included). Past either, a new connection is
  # answered with a five-byte "busy, retry within" refusal and closed,
  # before any TLS work.
  max_unauthenticated_connections            = 256
  max_unauthenticated_connections_per_source = 8

  # Largest message accepted without an agent SVID: the attestation
  # evidence, including a TPM's measured-boot event log (sent base64 in
  # JSON: logs up to ~390 KB fit in 512KiB). Larger messages are refused
  # from their length prefix, unread. Between "32KiB" and "16MiB"; units
  # "B", "KiB", "MiB".
  max_unauthenticated_message_size = "512KiB"

  # JWT-SVID signing keys: key type ("ec-p256" signs ES256, "ec-p384"
  # ES384, "rsa-2048" RS256) and lifetime of each key. A key's successor is
  # published in the JWT bundle at 1/2 of its lifetime, signs from 5/6, and
  # the old key leaves the bundle when it expires; no token outlives its key.
  jwt_key_type = "ec-p256"
  jwt_key_ttl  = "24h"

  # Lifetime of JWT-SVIDs whose entry sets none; must be shorter than
  # jwt_key_ttl and at most 24h. Near a rotation a token may be shortened so
  # that it expires with its key.
  default_jwt_svid_ttl = "5m"

  # The "iss" claim of every JWT-SVID: an https:// URL without query or
  # fragment. Required by the oidc block (where it is also the issuer of the
  # discovery document); empty means no "iss" claim.
  # jwt_issuer = "https://oidc.example.org"

  # Logging: level "debug", "info", "warn" or "error"; format "text" or
  # "json"; log_file appends to a file (mode 0600) instead of stderr.
  log_level  = "info"
  log_format = "text"
  log_file   = ""
}

# Where registration entries, agents and join tokens are stored. The whole
# block is optional: without it the server uses SQLite at
# <data_dir>/datastore.sqlite3.
datastore {
  # "sqlite" or "postgres".
  type = "sqlite"

  # SQLite database file (sqlite only). Defaults to
  # <data_dir>/datastore.sqlite3.
  path = "./data/server/datastore.sqlite3"

  # PostgreSQL connection string (postgres only, and required there), e.g.
  # connection_string = "postgres://hallmark@db.example.org:5432/hallmark?sslmode=verify-full"
}

# Node attestors: how agents prove which node they run on. One block per
# kind; the label is the kind and the body holds that attestor's own
# settings (see its documentation). Zero or more.

# Join tokens: single-use secrets generated on the server.
node_attestor "join_token" {}

# Other kinds, each documented in docs/tpm.md, docs/aws.md and
# docs/kubernetes.md. Keys that bind or narrow trust, for example:
#
# node_attestor "tpm" {
#   ek_ca_dir  = "/etc/hallmark/tpm-ek-ca"   # must hold a self-signed root
#   ek_crl_dir = "/etc/hallmark/tpm-ek-crl"  # optional EK CRLs, checked at start-up
#   pcr_bank   = "sha256"                    # "sha1" needs allow_sha1_pcr_bank = true
# }
# node_attestor "aws_iam" {
#   account_ids = ["123456789012"]
#   # server_id = "..."  # the name agents sign into the challenge; default
#   #                    # spiffe://<trust_domain>/hallmark/server
# }
# node_attestor "k8s_psat" {
#   cluster "prod" {
#     service_account_allow_list = ["hallmark:hallmark-agent"]
#     in_cluster                 = true
#     # audience = ["..."]  # default ["spiffe://<trust_domain>/hallmark/server"]
#   }
# }

# OIDC discovery for JWT-SVIDs (optional): serves
# <jwt_issuer>/.well-known/openid-configuration and <jwt_issuer>/keys (the
# current JWT signing keys, including the published next key) so that
# relying parties such as AWS IAM, GCP workload identity federation or
# Vault can verify JWT-SVIDs. Needs jwt_issuer in the server block.
#
# oidc {
#   # IP address and port to listen on. Plain HTTP only on a loopback
#   # address, for a TLS-terminating proxy on the same machine; anywhere
#   # else set cert_file_path and key_file_path to serve HTTPS.
#   listen_address = "127.0.0.1:8090"
#
#   # Host names accepted in the Host header; default: the host of
#   # jwt_issuer alone (which must be listed if domains is set).
#   domains = ["oidc.example.org"]
#
#   # PEM certificate chain and key for HTTPS; re-read when they change.
#   cert_file_path = "/etc/hallmark/oidc.crt"
#   key_file_path  = "/etc/hallmark/oidc.key"
# }

# Trust-bundle publishers (optional, one block per kind): where the server
# keeps its trust bundle current for agents' first contact — at start, on
# every CA change (prepare, taint, revoke, expiry) and every 5 minutes;
# each target is read first and written only when it differs, so several
# servers on one PostgreSQL database may publish to the same place. Format
# "pem" (default) or "spiffe" (SPIFFE bundle JSON). See docs/operations.md,
# "Trust-bundle distribution".
#
# bundle_publisher "file" {
#   path   = "/var/lib/hallmark/public/bundle.pem"  # written atomically, mode 0644; its
#                                                   # directory must not be group/other-writable
#   format = "pem"
# }
# bundle_publisher "k8s_configmap" {
#   namespace             = "hallmark"
#   config_map            = "hallmark-bundle"
#   config_map_key        = "bundle.pem"
#   kube_config_file_path = ""   # empty: in-cluster service account (get, patch)
#   format                = "pem"
# }
# bundle_publisher "aws_ssm" {
#   parameter_name = "/hallmark/trust-bundle"  # ssm:GetParameter, ssm:PutParameter
#   region         = "eu-west-1"               # default: the AWS configuration's
#   parameter_type = "String"                  # or "SecureString"
#   tier           = "Standard"                # or "Advanced", "Intelligent-Tiering"
#   endpoint       = ""                        # e.g. a VPC endpoint (https)
#   format         = "pem"
# }

# Kubernetes registrar (optional; docs/kubernetes-registrar.md): registration
# entries for pods, from SPIRE's ClusterSPIFFEID / ClusterStaticEntry CRDs
# (deploy/crds) and from the built-in Istio-style default, kept current by
# watching the API server. Entries are parented to the pod's node agent
# (k8s_psat, this cluster name). Among several servers on one PostgreSQL
# database the Lease hallmark-registrar elects the one that writes. RBAC:
# deploy/kubernetes/base/registrar-rbac.yaml.
#
# k8s_registrar {
#   cluster                   = "prod"       # the k8s_psat cluster block's name
#   in_cluster                = true         # or kube_config_file = "/path"
#   leader_election_namespace = "hallmark"   # Lease hallmark-registrar lives here
#   ignore_namespaces         = ["kube-system", "kube-public", "kube-node-lease", "local-path-storage", "hallmark"]
#   cluster_domain            = "cluster.local"
#   class_name                = ""           # objects with another className are left alone
#   watch_classless           = true         # objects without className are ours
#   default_cluster_spiffeid  = true         # spiffe://<td>/ns/<ns>/sa/<sa> for every pod (fallback)
# }

# Prometheus metrics and health (optional): GET /metrics, /live and /ready
# on listen_address (an IP address or localhost, and a port). The endpoint
# has no authentication: keep it on loopback or a private network. Without
# the block (or with listen_address = "") nothing listens. See
# docs/operations.md, "Health and metrics".
#
# telemetry {
#   listen_address = "127.0.0.1:9988"
# }

# Audit log (optional): one JSON line per admin action and per attestation
# decision. Without the block the server writes <data_dir>/audit.log with
# fsync = "interval". See docs/audit.md.
#
# audit {
#   path   = "/var/log/hallmark/audit.log"  # mode 0600; "" with stdout only
#   stdout = false                          # also (or only) to stdout
#   fsync  = "interval"                     # "always": a decision waits for its
#                                           # record on disk; "never": the kernel's
# }

# SPIFFE federation (optional): serve this trust domain's bundle to other
# domains and fetch theirs. See docs/federation.md.
#
# federation {
#   bundle_endpoint {
#     address      = "0.0.0.0"
#     port         = 443
#     refresh_hint = "5m"   # the spiffe_refresh_hint the bundle advertises
#     # Web PKI certificate for the endpoint's DNS name; without a profile
#     # block the endpoint authenticates with the server's own SVID
#     # (profile "https_spiffe" {}).
#     profile "https_web" {
#       serving_cert_file {
#         cert_file_path     = "/etc/hallmark/endpoint.crt"
#         key_file_path      = "/etc/hallmark/endpoint.key"
#         file_sync_interval = "1m"
#       }
#     }
#   }
#   # A domain whose endpoint authenticates with its SVID: the first
#   # contact needs its bundle.
#   federates_with "other.org" {
#     bundle_endpoint_url = "https://other.org:8443"
#     bundle_endpoint_profile "https_spiffe" {
#       endpoint_spiffe_id = "spiffe://other.org/hallmark/server"
#     }
#     trust_bundle_path   = "/etc/hallmark/other.org.bundle"
#     trust_bundle_format = "spiffe"  # or "pem"; default: detected
#   }
#   # A domain whose endpoint has a web PKI certificate.
#   federates_with "partner.example" {
#     bundle_endpoint_url = "https://bundle.partner.example"
#     bundle_endpoint_profile "https_web" {}
#   }
# }

# Upstream authority (optional): the server's signing CA becomes an
# intermediate of an existing CA instead of a self-signed root; agents and
# workloads then trust that CA's roots. "disk" is the only kind.
#
# upstream_authority "disk" {
#   cert_file_path   = "/etc/hallmark/upstream.crt"  # the CA's certificate, then its chain (PEM)
#   key_file_path    = "/etc/hallmark/upstream.key"  # its private key (PEM, mode 0600)
#   bundle_file_path = "/etc/hallmark/roots.pem"     # optional: the trust anchors (PEM)
# }
