package config

import (
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// OIDC is the oidc block: a listener serving the OpenID discovery document
// and the JWKS of the JWT signing keys, with jwt_issuer as the issuer.
type OIDC struct {
	// ListenAddress is the host:port to listen on; the host is an IP
	// address, and a loopback one unless CertFile and KeyFile are set
	// (plain HTTP is only for a TLS proxy on the same machine).
	ListenAddress string
	// Domains are the host names requests may name in their Host header;
	// by default the issuer's host alone.
	Domains []string
	// CertFile and KeyFile (PEM), when set, make the listener serve HTTPS.
	CertFile, KeyFile string
}

type rawOIDC struct {
	ListenAddress string   `hcl:"listen_address"`
	Domains       []string `hcl:"domains,optional"`
	CertFilePath  string   `hcl:"cert_file_path,optional"`
	KeyFilePath   string   `hcl:"key_file_path,optional"`
}

// jwt decodes the JWT settings of the server block.
func (c *Config) jwt(s hclconf.Section, raw *rawServer) hcl.Diagnostics {
	var diags hcl.Diagnostics
	c.JWTKeyType = KeyType(s.OneOf("jwt_key_type", raw.JWTKeyType, string(DefaultJWTKeyType),
		[]string{string(KeyTypeECP256), string(KeyTypeECP384), string(KeyTypeRSA2048)}, &diags))
	c.JWTKeyTTL = s.Duration("jwt_key_ttl", raw.JWTKeyTTL, DefaultJWTKeyTTL, &diags)
	c.DefaultJWTSVIDTTL = s.Duration("default_jwt_svid_ttl", raw.DefaultJWTSVIDTTL, DefaultJWTSVIDTTL, &diags)
	switch {
	case c.DefaultJWTSVIDTTL > MaxJWTSVIDTTL:
		diags = append(diags, s.Errorf("default_jwt_svid_ttl", summaryInvalidValue,
			"default_jwt_svid_ttl (%v) must be at most %v.", c.DefaultJWTSVIDTTL, MaxJWTSVIDTTL))
	case c.DefaultJWTSVIDTTL >= c.JWTKeyTTL:
		at := "default_jwt_svid_ttl"
		if !s.Set(at) {
			at = "jwt_key_ttl"
		}
		diags = append(diags, s.Errorf(at, summaryConflictingSetting,
			"default_jwt_svid_ttl (%v) must be shorter than jwt_key_ttl (%v): a JWT-SVID cannot outlive its signing key.",
			c.DefaultJWTSVIDTTL, c.JWTKeyTTL))
	}
	if s.Set("jwt_issuer") {
		if err := checkIssuer(raw.JWTIssuer); err != "" {
			diags = append(diags, s.Errorf("jwt_issuer", summaryInvalidValue, "jwt_issuer %q %s.", raw.JWTIssuer, err))
		} else {
			c.JWTIssuer = raw.JWTIssuer
		}
	}
	return diags
}

// checkIssuer returns why iss is not a usable OIDC issuer, or "".
func checkIssuer(iss string) string {
	u, err := url.Parse(iss)
	switch {
	case err != nil || u.Opaque != "":
		return "is not a URL"
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
	case u.Scheme != "https":
		return "must be an https:// URL (http:// only for a loopback host)"
	}
	switch {
	case u.Host == "":
		return "has no host"
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || strings.HasSuffix(iss, "?") || strings.HasSuffix(iss, "#"):
		return "must not carry user info, a query or a fragment"
	}
	return ""
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// oidc decodes the oidc block; issuerWritten reports whether the server
// block has a jwt_issuer (valid or not: an invalid one is reported there).
func (c *Config) oidc(b *hcl.Block, issuerWritten bool) hcl.Diagnostics {
	var raw rawOIDC
	s, diags := hclconf.Decode(b.Body, &raw)
	o := &OIDC{}
	if !issuerWritten {
		diags = append(diags, hclconf.Errorf(b.DefRange, "Missing required argument",
			"The oidc block needs jwt_issuer in the server block: the https:// URL relying parties fetch the discovery document from, and the \"iss\" claim of every JWT-SVID."))
	}
	if s.Set("listen_address") {
		host, port, err := net.SplitHostPort(raw.ListenAddress)
		var ip net.IP
		if err == nil {
			ip = net.ParseIP(host)
		}
		p, perr := strconv.Atoi(port)
		switch {
		case err != nil || ip == nil || perr != nil || p < 0 || p > 65535:
			diags = append(diags, s.Errorf("listen_address", summaryInvalidValue,
				"listen_address %q is not an IP address and port, such as \"127.0.0.1:8090\".", raw.ListenAddress))
		case !ip.IsLoopback() && !(s.Set("cert_file_path") && s.Set("key_file_path")):
			diags = append(diags, s.Errorf("listen_address", summaryConflictingSetting,
				"listen_address %q is not a loopback address: serving plain HTTP is allowed only on loopback, for a TLS proxy on the same machine. Set cert_file_path and key_file_path to serve HTTPS.", raw.ListenAddress))
		default:
			o.ListenAddress = raw.ListenAddress
		}
	}
	if s.Has("cert_file_path") != s.Has("key_file_path") {
		at := "cert_file_path"
		if !s.Has(at) {
			at = "key_file_path"
		}
		diags = append(diags, s.Errorf(at, summaryConflictingSetting, "cert_file_path and key_file_path go together."))
	}
	o.CertFile = s.NonEmpty("cert_file_path", raw.CertFilePath, &diags)
	o.KeyFile = s.NonEmpty("key_file_path", raw.KeyFilePath, &diags)

	var issuerHost string
	if u, err := url.Parse(c.JWTIssuer); err == nil && c.JWTIssuer != "" {
		issuerHost = u.Hostname()
	}
	if s.Set("domains") {
		seen := map[string]bool{}
		for _, d := range raw.Domains {
			switch {
			case !validDomain(d):
				diags = append(diags, s.Errorf("domains", summaryInvalidValue,
					"domains: %q is not a lowercase host name or IP address (no scheme, port or path).", d))
			case seen[d]:
				diags = append(diags, s.Errorf("domains", summaryInvalidValue, "domains: %q is listed twice.", d))
			default:
				seen[d] = true
				o.Domains = append(o.Domains, d)
			}
		}
		if len(raw.Domains) == 0 {
			diags = append(diags, s.Errorf("domains", summaryInvalidValue, "domains must not be empty; leave it out to allow the issuer's host alone."))
		} else if issuerHost != "" && !seen[issuerHost] {
			diags = append(diags, s.Errorf("domains", summaryConflictingSetting,
				"domains must include %q, the host of jwt_issuer, where relying parties fetch the keys.", issuerHost))
		}
	} else if issuerHost != "" {
		o.Domains = []string{issuerHost}
	}
	c.OIDC = o
	return diags
}

// validDomain reports whether d is a lowercase DNS name or an IP address.
func validDomain(d string) bool {
	if net.ParseIP(d) != nil {
		return true
	}
	if d == "" || len(d) > 253 || d != strings.ToLower(d) {
		return false
	}
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}
