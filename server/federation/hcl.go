package federation

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// Defaults of the bundle_endpoint block.
const (
	DefaultEndpointAddress = "0.0.0.0"
	DefaultEndpointPort    = 443
)

// Settings is the server's federation block, validated.
type Settings struct {
	// Endpoint is nil when there is no bundle_endpoint block.
	Endpoint *EndpointSettings
	// Relationships holds one entry per federates_with block, in order.
	Relationships []Relationship
}

// EndpointSettings is the bundle_endpoint block.
type EndpointSettings struct {
	Address            string // host:port
	Profile            Profile
	CertFile, KeyFile  string // ProfileHTTPSWeb
	CertReloadInterval time.Duration
	RefreshHint        time.Duration
}

// Config returns the EndpointConfig these settings describe; the caller
// adds TrustDomain, Bundle, JWTAuthorities, GetCertificate and Log.
func (s EndpointSettings) Config() EndpointConfig {
	return EndpointConfig{
		Address: s.Address, Profile: s.Profile, CertFile: s.CertFile, KeyFile: s.KeyFile,
		CertReloadInterval: s.CertReloadInterval, RefreshHint: s.RefreshHint,
	}
}

type rawEndpoint struct {
	Address     string   `hcl:"address,optional"`
	Port        int      `hcl:"port,optional"`
	RefreshHint string   `hcl:"refresh_hint,optional"`
	Rest        hcl.Body `hcl:",remain"`
}

type rawServingCertFile struct {
	CertFilePath     string `hcl:"cert_file_path"`
	KeyFilePath      string `hcl:"key_file_path"`
	FileSyncInterval string `hcl:"file_sync_interval,optional"`
}

type rawFederatesWith struct {
	BundleEndpointURL string   `hcl:"bundle_endpoint_url"`
	TrustBundlePath   string   `hcl:"trust_bundle_path,optional"`
	TrustBundleFormat string   `hcl:"trust_bundle_format,optional"`
	Rest              hcl.Body `hcl:",remain"`
}

type rawSPIFFEProfile struct {
	EndpointSPIFFEID string `hcl:"endpoint_spiffe_id"`
}

var (
	federationSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "bundle_endpoint"},
		{Type: "federates_with", LabelNames: []string{"trust_domain"}},
	}}
	endpointSchema      = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "profile", LabelNames: []string{"name"}}}}
	webProfileSchema    = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "serving_cert_file"}, {Type: "acme"}}}
	federatesWithSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "bundle_endpoint_profile", LabelNames: []string{"name"}}}}
	emptySchema         = &hcl.BodySchema{}
)

// ParseHCL decodes the body of the server's federation block (SPIRE's
// shape) for the trust domain own:
//
//	federation {
//	  bundle_endpoint {
//	    address      = "0.0.0.0"   # default
//	    port         = 8443        # default 443
//	    refresh_hint = "5m"        # default 5m
//	    profile "https_web" {
//	      serving_cert_file {
//	        cert_file_path     = "/etc/hallmark/endpoint.crt"
//	        key_file_path      = "/etc/hallmark/endpoint.key"
//	        file_sync_interval = "1m"
//	      }
//	    }
//	    # or: profile "https_spiffe" {}   (the default without a profile)
//	  }
//	  federates_with "other.org" {
//	    bundle_endpoint_url = "https://other.org:8443"
//	    bundle_endpoint_profile "https_spiffe" {
//	      endpoint_spiffe_id = "spiffe://other.org/hallmark/server"
//	    }
//	    trust_bundle_path   = "/etc/hallmark/other.org.bundle"  # required for https_spiffe
//	    trust_bundle_format = "spiffe"                           # or "pem"; default: detect
//	  }
//	  federates_with "web.example" {
//	    bundle_endpoint_url = "https://bundle.web.example"
//	    bundle_endpoint_profile "https_web" {}
//	  }
//	}
//
// It returns every problem found, each at its position; files are not
// read here (NewEndpoint and NewFetcher do).
func ParseHCL(body hcl.Body, own spiffeid.TrustDomain) (Settings, hcl.Diagnostics) {
	var s Settings
	content, diags := body.Content(federationSchema)
	if b := hclconf.Single(content.Blocks, "bundle_endpoint", false, body.MissingItemRange(), &diags); b != nil {
		s.Endpoint = parseEndpoint(b.Body, &diags)
	}
	first := map[spiffeid.TrustDomain]hcl.Range{}
	for _, b := range content.Blocks.OfType("federates_with") {
		td, err := spiffeid.TrustDomainFromString(b.Labels[0])
		if err != nil {
			diags = append(diags, hclconf.Errorf(b.LabelRanges[0], "Invalid trust domain", "federates_with %q: %v.", b.Labels[0], err))
			continue
		}
		if td == own {
			diags = append(diags, hclconf.Errorf(b.LabelRanges[0], "Invalid trust domain",
				"%q is this server's own trust domain; federates_with names other trust domains.", td.Name()))
			continue
		}
		if prev, dup := first[td]; dup {
			diags = append(diags, hclconf.Errorf(b.DefRange, "Duplicate federates_with block",
				"Trust domain %q is already configured at %s:%d.", td.Name(), prev.Filename, prev.Start.Line))
			continue
		}
		first[td] = b.DefRange
		if rel, ok := parseFederatesWith(td, b, &diags); ok {
			s.Relationships = append(s.Relationships, rel)
		}
	}
	return s, diags
}

func parseEndpoint(body hcl.Body, diags *hcl.Diagnostics) *EndpointSettings {
	var raw rawEndpoint
	sec, d := hclconf.Decode(body, &raw)
	*diags = append(*diags, d...)
	e := &EndpointSettings{Profile: ProfileHTTPSSPIFFE, CertReloadInterval: DefaultCertReloadInterval}
	addr := DefaultEndpointAddress
	if sec.Set("address") {
		if net.ParseIP(raw.Address) == nil {
			*diags = append(*diags, sec.Errorf("address", "Invalid value",
				"address %q is not an IP address (such as \"0.0.0.0\" or \"::\").", raw.Address))
		} else {
			addr = raw.Address
		}
	}
	port := DefaultEndpointPort
	if sec.Set("port") {
		if raw.Port < 0 || raw.Port > 65535 {
			*diags = append(*diags, sec.Errorf("port", "Invalid value", "port %d is out of range 0-65535.", raw.Port))
		} else {
			port = raw.Port
		}
	}
	e.Address = net.JoinHostPort(addr, strconv.Itoa(port))
	e.RefreshHint = sec.Duration("refresh_hint", raw.RefreshHint, DefaultRefreshHint, diags)
	if raw.Rest == nil {
		return e
	}
	content, d := raw.Rest.Content(endpointSchema)
	*diags = append(*diags, d...)
	p := hclconf.Single(content.Blocks, "profile", false, body.MissingItemRange(), diags)
	if p == nil {
		return e
	}
	switch Profile(p.Labels[0]) {
	case ProfileHTTPSSPIFFE:
		_, d := p.Body.Content(emptySchema)
		*diags = append(*diags, d...)
	case ProfileHTTPSWeb:
		e.Profile = ProfileHTTPSWeb
		pc, d := p.Body.Content(webProfileSchema)
		*diags = append(*diags, d...)
		for _, a := range pc.Blocks.OfType("acme") {
			*diags = append(*diags, hclconf.Errorf(a.DefRange, "Unsupported block",
				"ACME is not supported; obtain the certificate elsewhere and use serving_cert_file."))
		}
		f := hclconf.Single(pc.Blocks, "serving_cert_file", true, p.Body.MissingItemRange(), diags)
		if f == nil {
			return e
		}
		var rf rawServingCertFile
		fs, d := hclconf.Decode(f.Body, &rf)
		*diags = append(*diags, d...)
		e.CertFile = fs.NonEmpty("cert_file_path", rf.CertFilePath, diags)
		e.KeyFile = fs.NonEmpty("key_file_path", rf.KeyFilePath, diags)
		e.CertReloadInterval = fs.Duration("file_sync_interval", rf.FileSyncInterval, DefaultCertReloadInterval, diags)
	default:
		*diags = append(*diags, hclconf.Errorf(p.LabelRanges[0], "Invalid profile",
			"profile %q is not %q or %q.", p.Labels[0], ProfileHTTPSWeb, ProfileHTTPSSPIFFE))
	}
	return e
}

func parseFederatesWith(td spiffeid.TrustDomain, b *hcl.Block, diags *hcl.Diagnostics) (Relationship, bool) {
	n := len(*diags)
	var raw rawFederatesWith
	sec, d := hclconf.Decode(b.Body, &raw)
	*diags = append(*diags, d...)
	rel := Relationship{TrustDomain: td, URL: raw.BundleEndpointURL, TrustBundlePath: raw.TrustBundlePath}
	if sec.Set("bundle_endpoint_url") {
		if err := checkURL(raw.BundleEndpointURL); err != nil {
			*diags = append(*diags, sec.Errorf("bundle_endpoint_url", "Invalid value", "%v.", err))
		}
	}
	sec.NonEmpty("trust_bundle_path", raw.TrustBundlePath, diags)
	rel.TrustBundleFormat = sec.OneOf("trust_bundle_format", raw.TrustBundleFormat, "", []string{FormatSPIFFE, FormatPEM}, diags)
	if raw.Rest != nil {
		content, d := raw.Rest.Content(federatesWithSchema)
		*diags = append(*diags, d...)
		p := hclconf.Single(content.Blocks, "bundle_endpoint_profile", true, b.Body.MissingItemRange(), diags)
		if p != nil {
			rel.Profile = Profile(p.Labels[0])
			switch rel.Profile {
			case ProfileHTTPSWeb:
				_, d := p.Body.Content(emptySchema)
				*diags = append(*diags, d...)
			case ProfileHTTPSSPIFFE:
				var rp rawSPIFFEProfile
				ps, d := hclconf.Decode(p.Body, &rp)
				*diags = append(*diags, d...)
				if ps.Set("endpoint_spiffe_id") {
					id, err := spiffeid.FromString(rp.EndpointSPIFFEID)
					switch {
					case err != nil:
						*diags = append(*diags, ps.Errorf("endpoint_spiffe_id", "Invalid SPIFFE ID", "%q: %v.", rp.EndpointSPIFFEID, err))
					case id.TrustDomain() != td:
						*diags = append(*diags, ps.Errorf("endpoint_spiffe_id", "Invalid SPIFFE ID",
							"%q is not in trust domain %q; the endpoint's SVID must belong to the trust domain it serves.", id, td.Name()))
					default:
						rel.EndpointID = id
					}
				}
				if !sec.Has("trust_bundle_path") {
					*diags = append(*diags, hclconf.Errorf(b.DefRange, "Missing required argument",
						"https_spiffe needs trust_bundle_path: the bundle of %q that authenticates its endpoint the first time.", td.Name()))
				}
			default:
				*diags = append(*diags, hclconf.Errorf(p.LabelRanges[0], "Invalid profile",
					"bundle_endpoint_profile %q is not %q or %q.", p.Labels[0], ProfileHTTPSWeb, ProfileHTTPSSPIFFE))
			}
		}
	}
	return rel, !(*diags)[n:].HasErrors()
}

// checkURL returns why raw is not a usable bundle endpoint URL.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return fmt.Errorf("bundle endpoint URL: %w", err)
	case u.Scheme != "https" || u.Host == "" || u.Opaque != "":
		return fmt.Errorf("bundle endpoint URL %q is not an https:// URL", raw)
	case u.User != nil || u.Fragment != "":
		return fmt.Errorf("bundle endpoint URL %q must not carry user info or a fragment", raw)
	}
	return nil
}
