package telemetry

import (
	"fmt"
	"net"
	"strconv"
)

// DefaultListenAddress is the conventional address; telemetry is off
// unless listen_address is set.
const DefaultListenAddress = "127.0.0.1:9988"

// HCLConfig is the `telemetry { ... }` block of the server and agent
// configurations:
//
//	telemetry {
//	  listen_address = "127.0.0.1:9988" # empty: no telemetry endpoint
//	}
type HCLConfig struct {
	ListenAddress string `hcl:"listen_address,optional"`
}

// Enabled reports whether an endpoint is configured.
func (h HCLConfig) Enabled() bool { return h.ListenAddress != "" }

// Validate checks listen_address: empty, or host:port with an IP address
// (or "localhost", or empty for every interface) and a port 0-65535.
func (h HCLConfig) Validate() error {
	if h.ListenAddress == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(h.ListenAddress)
	if err != nil {
		return fmt.Errorf("telemetry: listen_address %q: %w", h.ListenAddress, err)
	}
	if host != "" && host != "localhost" && net.ParseIP(host) == nil {
		return fmt.Errorf("telemetry: listen_address %q: host must be an IP address or localhost", h.ListenAddress)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("telemetry: listen_address %q: port must be 0-65535", h.ListenAddress)
	}
	return nil
}
