package k8spsat

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
)

// DefaultAudience returns the audience an agent's projected token must
// carry when the server sets none: the server's SPIFFE ID,
// spiffe://<td>/hallmark/server. Naming the trust domain means a token
// projected for another deployment's server is refused here, and the other
// way round. It returns "" for the zero trust domain.
func DefaultAudience(td spiffeid.TrustDomain) string {
	id, err := attestors.ServerID(td)
	if err != nil {
		return ""
	}
	return id.String()
}

// ServerConfig is the server's `node_attestor "k8s_psat" { ... }` block.
type ServerConfig struct {
	Clusters []ClusterConfig `hcl:"cluster,block"`

	// Log receives rejections and key refreshes; nil discards them.
	Log *slog.Logger
	// Now is the clock for offline token validation; nil means time.Now.
	Now func() time.Time
}

// ClusterConfig is one `cluster "<name>" { ... }` block. Exactly one of
// KubeConfigFile, InCluster, JWKSURL and JWKSFile selects how tokens are
// validated.
type ClusterConfig struct {
	Name string `hcl:"name,label"`
	// ServiceAccountAllowList holds "namespace:name" entries; tokens of
	// other service accounts are rejected.
	ServiceAccountAllowList []string `hcl:"service_account_allow_list"`
	// Audience: the token must carry one of these. Default: the server's
	// SPIFFE ID, ["spiffe://<td>/hallmark/server"], which is what the
	// agents' projected token volume must then request. Set it to keep
	// another name (SPIRE's default is "spire-server"); a list replaces the
	// default, it does not add to it.
	Audience []string `hcl:"audience,optional"`

	// KubeConfigFile: validate with the TokenReview API of the cluster it
	// names (current context; token, token file or client certificate
	// credentials; exec plugins are not supported).
	KubeConfigFile string `hcl:"kube_config_file,optional"`
	// InCluster: validate with the TokenReview API of the cluster the
	// server runs in (KUBERNETES_SERVICE_HOST, the pod's own token and CA).
	InCluster bool `hcl:"in_cluster,optional"`

	// JWKSURL or JWKSFile: validate offline, against the cluster's service
	// account issuer keys (EKS: https://oidc.eks.<region>.amazonaws.com/
	// id/<id>/keys). Issuer is then required. JWKSCAFile, if set, replaces
	// the system roots for JWKSURL. JWKSRefreshInterval ("5m") bounds how
	// long keys are cached; an unknown key ID triggers an earlier refresh.
	JWKSURL             string `hcl:"jwks_url,optional"`
	JWKSFile            string `hcl:"jwks_file,optional"`
	JWKSCAFile          string `hcl:"jwks_ca_file,optional"`
	JWKSRefreshInterval string `hcl:"jwks_refresh_interval,optional"`
	// Issuer is the token's expected "iss" (the API server's
	// --service-account-issuer). Required offline; with TokenReview it is
	// checked too when set.
	Issuer string `hcl:"issuer,optional"`
}

func (c *ClusterConfig) validate() error {
	if err := validClusterName(c.Name); err != nil {
		return err
	}
	if len(c.ServiceAccountAllowList) == 0 {
		return fmt.Errorf("k8spsat: cluster %q: service_account_allow_list is empty", c.Name)
	}
	for _, sa := range c.ServiceAccountAllowList {
		ns, name, ok := strings.Cut(sa, ":")
		if !ok || ns == "" || name == "" || strings.Contains(name, ":") {
			return fmt.Errorf("k8spsat: cluster %q: service account %q: want namespace:name", c.Name, sa)
		}
	}
	for _, a := range c.Audience {
		if a == "" {
			return fmt.Errorf("k8spsat: cluster %q: empty audience", c.Name)
		}
	}
	modes := 0
	for _, set := range []bool{c.KubeConfigFile != "", c.InCluster, c.JWKSURL != "", c.JWKSFile != ""} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return fmt.Errorf("k8spsat: cluster %q: set exactly one of kube_config_file, in_cluster, jwks_url, jwks_file", c.Name)
	}
	offline := c.JWKSURL != "" || c.JWKSFile != ""
	if offline && c.Issuer == "" {
		return fmt.Errorf("k8spsat: cluster %q: issuer is required with jwks_url or jwks_file", c.Name)
	}
	if c.JWKSURL != "" {
		u, err := url.Parse(c.JWKSURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("k8spsat: cluster %q: jwks_url %q must be an https URL", c.Name, c.JWKSURL)
		}
	}
	if c.JWKSCAFile != "" && c.JWKSURL == "" {
		return fmt.Errorf("k8spsat: cluster %q: jwks_ca_file without jwks_url", c.Name)
	}
	if c.JWKSRefreshInterval != "" {
		if !offline {
			return fmt.Errorf("k8spsat: cluster %q: jwks_refresh_interval without jwks_url or jwks_file", c.Name)
		}
		d, err := time.ParseDuration(c.JWKSRefreshInterval)
		if err != nil || d < time.Second || d > 24*time.Hour {
			return fmt.Errorf("k8spsat: cluster %q: jwks_refresh_interval %q: want 1s..24h", c.Name, c.JWKSRefreshInterval)
		}
	}
	return nil
}

// validClusterName accepts names that are one SPIFFE ID path segment.
func validClusterName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > 255 {
		return fmt.Errorf("k8spsat: cluster name %q: empty, dot or too long", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("k8spsat: cluster name %q: only letters, digits, '-', '_' and '.' allowed", name)
		}
	}
	return nil
}

var errNoClusters = errors.New("k8spsat: no cluster configured")
