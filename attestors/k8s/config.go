package k8s

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// Defaults.
const (
	DefaultKubeletSecurePort = 10250
	DefaultNodeNameEnv       = "MY_NODE_NAME"
	DefaultTokenPath         = "/var/run/secrets/kubernetes.io/serviceaccount/token"
	DefaultKubeletCAPath     = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
	DefaultMaxPollAttempts   = 10
	DefaultPollRetryInterval = 500 * time.Millisecond
	DefaultPodListCacheTTL   = time.Second
	DefaultKubeletTimeout    = 5 * time.Second
	DefaultProcDir           = "/proc"

	// MaxPodListSize bounds a kubelet /pods answer (110 pods of a busy
	// node are a few MiB).
	MaxPodListSize = 64 << 20
)

// Config configures the attestor. The hcl-tagged fields are the agent's
// `workload_attestor "k8s" { ... }` block, decoded strictly.
type Config struct {
	// KubeletReadOnlyPort, if set, selects plain HTTP to the kubelet's
	// read-only port (no token, no TLS). Off by default.
	KubeletReadOnlyPort int `hcl:"kubelet_read_only_port,optional"`
	// KubeletSecurePort is the kubelet's HTTPS port (default 10250).
	KubeletSecurePort int `hcl:"kubelet_secure_port,optional"`
	// KubeletURL overrides the kubelet address entirely, e.g.
	// "https://127.0.0.1:10250"; /pods is appended.
	KubeletURL string `hcl:"kubelet_url,optional"`
	// NodeName is the kubelet host name; if empty it is read from the
	// environment variable NodeNameEnv (default MY_NODE_NAME), and if that
	// is empty 127.0.0.1 is used.
	NodeNameEnv string `hcl:"node_name_env,optional"`
	NodeName    string `hcl:"node_name,optional"`
	// TokenPath is the bearer token for the secure port, read anew for
	// each kubelet request (projected tokens rotate).
	TokenPath string `hcl:"token_path,optional"`
	// KubeletCAPath is the CA bundle the kubelet's serving certificate must
	// chain to. SkipKubeletVerification turns that check off (never by
	// default).
	KubeletCAPath           string `hcl:"kubelet_ca_path,optional"`
	SkipKubeletVerification bool   `hcl:"skip_kubelet_verification,optional"`
	// MaxPollAttempts bounds the kubelet requests made while a container
	// is not listed yet (a pod that just started); PollRetryInterval is the
	// pause between them ("500ms").
	MaxPollAttempts   int    `hcl:"max_poll_attempts,optional"`
	PollRetryInterval string `hcl:"poll_retry_interval,optional"`
	// PodListCacheTTL is how long a pod list answers attestations ("1s").
	PodListCacheTTL string `hcl:"pod_list_cache_ttl,optional"`
	// KubeletTimeout bounds one kubelet request ("5s").
	KubeletTimeout string `hcl:"kubelet_timeout,optional"`
	// ProcDir is where /proc is mounted (default /proc).
	ProcDir string `hcl:"proc_dir,optional"`
	// CgroupRoot is kubelet's --cgroup-root when it is not "/", e.g.
	// "/kubelet.slice" on kind with cgroup v2. See ParseCgroupFile.
	CgroupRoot string `hcl:"cgroup_root,optional"`

	// Log receives debug and warning messages; nil discards them.
	Log *slog.Logger
}

// settings is a validated Config.
type settings struct {
	podsURL       string
	tokenPath     string // empty for plain HTTP
	client        *http.Client
	maxAttempts   int
	retryInterval time.Duration
	cacheTTL      time.Duration
	timeout       time.Duration
	procDir       string
	cgroupRoot    string
	log           *slog.Logger
}

func (c Config) settings() (*settings, error) {
	s := &settings{
		tokenPath:     orDefault(c.TokenPath, DefaultTokenPath),
		maxAttempts:   c.MaxPollAttempts,
		procDir:       orDefault(c.ProcDir, DefaultProcDir),
		cgroupRoot:    c.CgroupRoot,
		log:           c.Log,
		retryInterval: DefaultPollRetryInterval,
		cacheTTL:      DefaultPodListCacheTTL,
		timeout:       DefaultKubeletTimeout,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxAttempts == 0 {
		s.maxAttempts = DefaultMaxPollAttempts
	}
	if s.maxAttempts < 0 || s.maxAttempts > 1000 {
		return nil, fmt.Errorf("k8s: config: max_poll_attempts %d out of range 1..1000", c.MaxPollAttempts)
	}
	for _, d := range []struct {
		name, val string
		dst       *time.Duration
		min, max  time.Duration
	}{
		{"poll_retry_interval", c.PollRetryInterval, &s.retryInterval, time.Millisecond, time.Minute},
		{"pod_list_cache_ttl", c.PodListCacheTTL, &s.cacheTTL, 0, time.Minute},
		{"kubelet_timeout", c.KubeletTimeout, &s.timeout, 100 * time.Millisecond, 5 * time.Minute},
	} {
		if d.val == "" {
			continue
		}
		v, err := time.ParseDuration(d.val)
		if err != nil {
			return nil, fmt.Errorf("k8s: config: %s: %w", d.name, err)
		}
		if v < d.min || v > d.max {
			return nil, fmt.Errorf("k8s: config: %s %s out of range %s..%s", d.name, v, d.min, d.max)
		}
		*d.dst = v
	}
	if _, err := rootSegments(c.CgroupRoot); err != nil {
		return nil, fmt.Errorf("k8s: config: %w", err)
	}

	if c.KubeletReadOnlyPort != 0 && c.KubeletURL != "" {
		return nil, errors.New("k8s: config: kubelet_read_only_port and kubelet_url are mutually exclusive")
	}
	for name, p := range map[string]int{"kubelet_read_only_port": c.KubeletReadOnlyPort, "kubelet_secure_port": c.KubeletSecurePort} {
		if p < 0 || p > 65535 {
			return nil, fmt.Errorf("k8s: config: %s %d out of range", name, p)
		}
	}
	var base *url.URL
	switch {
	case c.KubeletURL != "":
		u, err := url.Parse(c.KubeletURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("k8s: config: kubelet_url %q: want http(s)://host[:port]", c.KubeletURL)
		}
		base = u
	default:
		host := c.NodeName
		if host == "" {
			host = os.Getenv(orDefault(c.NodeNameEnv, DefaultNodeNameEnv))
		}
		if host == "" {
			host = "127.0.0.1"
		}
		if c.KubeletReadOnlyPort != 0 {
			base = &url.URL{Scheme: "http", Host: net.JoinHostPort(host, strconv.Itoa(c.KubeletReadOnlyPort))}
		} else {
			port := c.KubeletSecurePort
			if port == 0 {
				port = DefaultKubeletSecurePort
			}
			base = &url.URL{Scheme: "https", Host: net.JoinHostPort(host, strconv.Itoa(port))}
		}
	}
	s.podsURL = base.JoinPath("pods").String()

	transport := &http.Transport{
		Proxy:               nil, // the kubelet is local: never via a proxy
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: s.timeout,
	}
	if base.Scheme == "https" {
		tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.SkipKubeletVerification {
			s.log.Warn("k8s: kubelet certificate verification is disabled")
			tlsConf.InsecureSkipVerify = true
		} else {
			caPath := orDefault(c.KubeletCAPath, DefaultKubeletCAPath)
			pem, err := os.ReadFile(caPath)
			if err != nil {
				return nil, fmt.Errorf("k8s: config: kubelet CA: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("k8s: config: kubelet CA %s: no PEM certificates", caPath)
			}
			tlsConf.RootCAs = pool
		}
		transport.TLSClientConfig = tlsConf
	} else {
		s.tokenPath = "" // never send a bearer token in clear text
	}
	s.client = &http.Client{
		Transport: transport,
		Timeout:   s.timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("k8s: kubelet redirects are not followed")
		},
	}
	return s, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
