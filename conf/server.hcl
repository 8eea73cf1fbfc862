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
  data_dir = "./data/server"

  # Unix socket of the admin API used by the hallmark-server CLI commands
  # (entries, join tokens). At most 107 bytes.
  socket_path = "/tmp/hallmark-server/private/api.sock"

  # Key type of the signing CA: "ec-p256", "ec-p384" or "rsa-2048".
  ca_key_type = "ec-p256"

  # Lifetime of the signing CA certificate.
  ca_ttl = "168h"

  # Lifetime of workload X.509 SVIDs; must be shorter than ca_ttl.
  default_x509_svid_ttl = "1h"

  # Lifetime of agent SVIDs; must be shorter than ca_ttl.
  agent_svid_ttl = "1h"

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
