// Package kubeapi connects to a Kubernetes API server the way Hallmark's
// server-side integrations need: from a kubeconfig (token, token file or
// client certificate; exec plugins, auth-provider and
// insecure-skip-tls-verify are refused, the server must be https) or from
// the pod's in-cluster environment, over verified TLS, without following
// redirects. Token files are read again for every request (the kubelet
// rotates them).
//
// Only server-side code may import it (the agent must not link the
// Kubernetes modules); it must not import client-go, server/ or agent/.
package kubeapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// RequestTimeout bounds one call, connection included.
const RequestTimeout = 10 * time.Second

// Config selects the API server and the credentials to call it with:
// exactly one of KubeConfigFile and InCluster.
type Config struct {
	// KubeConfigFile names a kubeconfig; its current context (or its only
	// context) selects the server and the user.
	KubeConfigFile string
	// InCluster uses the pod's own environment: KUBERNETES_SERVICE_HOST
	// and _PORT, and the service-account token and CA mounted at
	// /var/run/secrets/kubernetes.io/serviceaccount.
	InCluster bool
}

// Client calls one API server. It is safe for concurrent use.
type Client struct {
	base   string // https://host:port[/prefix], no trailing slash
	client *http.Client
	bearer func() (string, error) // nil for client-certificate auth
}

// New reads c's kubeconfig or in-cluster files and returns a client. It
// contacts no server.
func New(c Config) (*Client, error) {
	var (
		cl  *Client
		err error
	)
	switch {
	case c.InCluster && c.KubeConfigFile != "":
		return nil, errors.New("kubeapi: set one of the kubeconfig file and in-cluster, not both")
	case c.InCluster:
		cl, err = inCluster()
	case c.KubeConfigFile != "":
		cl, err = fromKubeconfig(c.KubeConfigFile)
	default:
		return nil, errors.New("kubeapi: neither a kubeconfig file nor in-cluster is set")
	}
	if err != nil {
		return nil, fmt.Errorf("kubeapi: %w", err)
	}
	return cl, nil
}

// URL returns the absolute URL of the API path p ("/api/v1/...").
func (c *Client) URL(p string) string { return c.base + p }

// NewRequest builds a request for the API path p with the client's
// credentials; body may be nil.
func (c *Client) NewRequest(ctx context.Context, method, p string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.URL(p), body)
	if err != nil {
		return nil, fmt.Errorf("kubeapi: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if c.bearer != nil {
		b, err := c.bearer()
		if err != nil {
			return nil, fmt.Errorf("kubeapi: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+b)
	}
	return req, nil
}

// Do sends req (from NewRequest) and returns the status code and the body,
// read up to limit bytes (a longer body is an error).
func (c *Client) Do(req *http.Request, limit int64) (int, []byte, error) {
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("kubeapi: %w", err)
	}
	defer resp.Body.Close()
	data, err := ReadAllLimited(resp.Body, limit)
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("kubeapi: answer: %w", err)
	}
	return resp.StatusCode, data, nil
}

// ReadAllLimited reads r to its end; more than limit bytes is an error.
func ReadAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}

// inClusterDir holds the server pod's own token and CA; a variable so that
// tests can point it elsewhere.
var inClusterDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func inCluster() (*Client, error) {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return nil, errors.New("in_cluster: KUBERNETES_SERVICE_HOST/PORT are not set (not running in a pod?)")
	}
	pool, err := poolFromFile(filepath.Join(inClusterDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("in_cluster: %w", err)
	}
	tokenFile := filepath.Join(inClusterDir, "token")
	if _, err := os.Stat(tokenFile); err != nil {
		return nil, fmt.Errorf("in_cluster: %w", err)
	}
	return &Client{
		base:   "https://" + net.JoinHostPort(host, port),
		client: apiClient(&tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}),
		bearer: fileBearer(tokenFile),
	}, nil
}

// kubeconfig is the part of a kubeconfig file this package understands.
type kubeconfig struct {
	CurrentContext string `json:"current-context"`
	Clusters       []struct {
		Name    string `json:"name"`
		Cluster struct {
			Server        string `json:"server"`
			CAData        []byte `json:"certificate-authority-data"`
			CAFile        string `json:"certificate-authority"`
			TLSServerName string `json:"tls-server-name"`
			Insecure      bool   `json:"insecure-skip-tls-verify"`
		} `json:"cluster"`
	} `json:"clusters"`
	Contexts []struct {
		Name    string `json:"name"`
		Context struct {
			Cluster string `json:"cluster"`
			User    string `json:"user"`
		} `json:"context"`
	} `json:"contexts"`
	Users []struct {
		Name string `json:"name"`
		User struct {
			Token        string          `json:"token"`
			TokenFile    string          `json:"tokenFile"`
			CertData     []byte          `json:"client-certificate-data"`
			KeyData      []byte          `json:"client-key-data"`
			CertFile     string          `json:"client-certificate"`
			KeyFile      string          `json:"client-key"`
			Exec         json.RawMessage `json:"exec"`
			AuthProvider json.RawMessage `json:"auth-provider"`
			Username     string          `json:"username"`
		} `json:"user"`
	} `json:"users"`
}

func fromKubeconfig(path string) (*Client, error) {
	raw, err := readLimited(path, 1<<20)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	var kc kubeconfig
	if err := yaml.Unmarshal(raw, &kc); err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	ctxName := kc.CurrentContext
	if ctxName == "" && len(kc.Contexts) == 1 {
		ctxName = kc.Contexts[0].Name
	}
	var clusterName, userName string
	found := false
	for _, c := range kc.Contexts {
		if c.Name == ctxName {
			clusterName, userName, found = c.Context.Cluster, c.Context.User, true
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s: context %q not found", path, ctxName)
	}
	r := &Client{}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	found = false
	for _, c := range kc.Clusters {
		if c.Name != clusterName {
			continue
		}
		found = true
		u, err := url.Parse(c.Cluster.Server)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("kubeconfig %s: server %q must be an https URL", path, c.Cluster.Server)
		}
		if c.Cluster.Insecure {
			return nil, fmt.Errorf("kubeconfig %s: insecure-skip-tls-verify is not supported", path)
		}
		r.base = strings.TrimSuffix(u.String(), "/")
		tlsConf.ServerName = c.Cluster.TLSServerName
		switch {
		case len(c.Cluster.CAData) > 0:
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(c.Cluster.CAData) {
				return nil, fmt.Errorf("kubeconfig %s: certificate-authority-data holds no PEM certificate", path)
			}
			tlsConf.RootCAs = pool
		case c.Cluster.CAFile != "":
			if tlsConf.RootCAs, err = poolFromFile(rel(c.Cluster.CAFile)); err != nil {
				return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
			}
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s: cluster %q not found", path, clusterName)
	}
	found = false
	for _, u := range kc.Users {
		if u.Name != userName {
			continue
		}
		found = true
		us := u.User
		switch {
		case len(us.Exec) > 0 && string(us.Exec) != "null", len(us.AuthProvider) > 0 && string(us.AuthProvider) != "null":
			return nil, fmt.Errorf("kubeconfig %s: exec and auth-provider credentials are not supported", path)
		case us.Token != "":
			tok := us.Token
			r.bearer = func() (string, error) { return tok, nil }
		case us.TokenFile != "":
			r.bearer = fileBearer(rel(us.TokenFile))
		case len(us.CertData) > 0 || us.CertFile != "":
			certPEM, keyPEM := us.CertData, us.KeyData
			if us.CertFile != "" {
				if certPEM, err = os.ReadFile(rel(us.CertFile)); err != nil {
					return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
				}
			}
			if us.KeyFile != "" {
				if keyPEM, err = os.ReadFile(rel(us.KeyFile)); err != nil {
					return nil, fmt.Errorf("kubeconfig %s: %w", path, err)
				}
			}
			cert, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				return nil, fmt.Errorf("kubeconfig %s: client certificate: %w", path, err)
			}
			tlsConf.Certificates = []tls.Certificate{cert}
		default:
			return nil, fmt.Errorf("kubeconfig %s: user %q has no token or client certificate", path, userName)
		}
	}
	if !found {
		return nil, fmt.Errorf("kubeconfig %s: user %q not found", path, userName)
	}
	r.client = apiClient(tlsConf)
	return r, nil
}

func apiClient(tlsConf *tls.Config) *http.Client {
	return &http.Client{
		Timeout:   RequestTimeout,
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConf, MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		},
	}
}

func fileBearer(path string) func() (string, error) {
	return func() (string, error) {
		b, err := readLimited(path, 64<<10)
		if err != nil {
			return "", fmt.Errorf("API token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("API token %s is empty", path)
		}
		return tok, nil
	}
}

func poolFromFile(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA %s: no PEM certificates", path)
	}
	return pool, nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAllLimited(f, limit)
}

// Transport returns the API server's base URL and a round tripper that
// sends the client's credentials (the token read again for every
// request), without the client's overall timeout: for client-go's
// long-lived watches (the registrar), which bound their own requests.
func (c *Client) Transport() (string, http.RoundTripper) {
	return c.base, bearerTransport{base: c.client.Transport, bearer: c.bearer}
}

type bearerTransport struct {
	base   http.RoundTripper
	bearer func() (string, error) // nil for client-certificate auth
}

func (t bearerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.bearer != nil {
		b, err := t.bearer()
		if err != nil {
			return nil, fmt.Errorf("kubeapi: %w", err)
		}
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+b)
	}
	return t.base.RoundTrip(req)
}
