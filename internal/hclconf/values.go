package hclconf

import (
	"fmt"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxSocketPath is the longest unix socket path Linux accepts (sun_path
// less its terminating NUL).
const MaxSocketPath = 107

// Has reports whether the attribute name was written in the body, whether
// or not it decoded.
func (s Section) Has(name string) bool {
	_, ok := s.attrs[name]
	return ok
}

// TrustDomain parses the trust-domain attribute name (raw is its decoded
// value), adding a problem to diags when it is not a bare, valid trust
// domain name such as "example.org". It returns the zero TrustDomain when
// the attribute is not Set or invalid.
func (s Section) TrustDomain(name, raw string, diags *hcl.Diagnostics) spiffeid.TrustDomain {
	if !s.Set(name) {
		return spiffeid.TrustDomain{}
	}
	if strings.Contains(raw, "://") {
		*diags = append(*diags, s.Errorf(name, "Invalid trust domain",
			"%s %q must be a bare name such as \"example.org\", without a scheme.", name, raw))
		return spiffeid.TrustDomain{}
	}
	td, err := spiffeid.TrustDomainFromString(raw)
	if err != nil {
		*diags = append(*diags, s.Errorf(name, "Invalid trust domain", "%s %q: %v.", name, raw, err))
		return spiffeid.TrustDomain{}
	}
	return td
}

// NonEmpty returns the string attribute name (raw is its decoded value),
// adding a problem to diags when it is Set but empty or only spaces.
func (s Section) NonEmpty(name, raw string, diags *hcl.Diagnostics) string {
	if s.Set(name) && strings.TrimSpace(raw) == "" {
		*diags = append(*diags, s.Errorf(name, "Invalid value", "%s must not be empty.", name))
	}
	return raw
}

// SocketPath returns the unix socket path attribute name (raw is its
// decoded value), or def when it is not Set. An empty path, or one longer
// than MaxSocketPath, is added to diags.
func (s Section) SocketPath(name, raw, def string, diags *hcl.Diagnostics) string {
	if !s.Set(name) {
		return def
	}
	var err error
	switch {
	case raw == "":
		err = fmt.Errorf("%s must not be empty", name)
	case len(raw) > MaxSocketPath:
		err = fmt.Errorf("%s %q is %d bytes long; unix socket paths are limited to %d", name, raw, len(raw), MaxSocketPath)
	case strings.ContainsRune(raw, 0):
		err = fmt.Errorf("%s %q contains a NUL byte", name, raw)
	}
	if err != nil {
		*diags = append(*diags, s.Errorf(name, "Invalid value", "%v.", err))
		return def
	}
	return raw
}

// OneOf returns the attribute name (raw is its decoded value) when it is
// one of allowed, or def when it is not Set. Any other value is added to
// diags.
func (s Section) OneOf(name, raw, def string, allowed []string, diags *hcl.Diagnostics) string {
	if !s.Set(name) {
		return def
	}
	for _, a := range allowed {
		if raw == a {
			return raw
		}
	}
	*diags = append(*diags, s.Errorf(name, "Invalid value", "%s %q is not one of %s.", name, raw, strings.Join(allowed, ", ")))
	return def
}
