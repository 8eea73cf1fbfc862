package registration

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Limits on entry fields.
const (
	MaxSelectors = 64
	MaxDNSNames  = 64
	MaxTTL       = 10 * 365 * 24 * time.Hour
)

// Entry is a registration entry: workloads (or agents, for node entries)
// matching Selectors under ParentID receive SPIFFEID.
type Entry struct {
	ID            string
	SPIFFEID      spiffeid.ID
	ParentID      spiffeid.ID
	Selectors     []Selector
	X509SVIDTTL   time.Duration // 0 = server default
	JWTSVIDTTL    time.Duration
	DNSNames      []string
	FederatesWith []spiffeid.TrustDomain
	Admin         bool
	Downstream    bool
	Hint          string
	Revision      int64
	CreatedAt     time.Time
}

// Validate checks an entry as submitted by an operator, for trust domain td.
func (e *Entry) Validate(td spiffeid.TrustDomain) error {
	if e.SPIFFEID.IsZero() {
		return errors.New("registration: entry: SPIFFE ID is required")
	}
	if e.ParentID.IsZero() {
		return errors.New("registration: entry: parent ID is required")
	}
	if e.SPIFFEID.TrustDomain() != td {
		return fmt.Errorf("registration: entry: SPIFFE ID %q is not in trust domain %q", e.SPIFFEID, td)
	}
	if e.ParentID.TrustDomain() != td {
		return fmt.Errorf("registration: entry: parent ID %q is not in trust domain %q", e.ParentID, td)
	}
	if e.SPIFFEID.Path() == "" {
		return fmt.Errorf("registration: entry: SPIFFE ID %q has no path", e.SPIFFEID)
	}
	if err := CheckNotReserved(e.SPIFFEID); err != nil {
		return err
	}
	if len(e.Selectors) == 0 {
		return errors.New("registration: entry: at least one selector is required")
	}
	if len(e.Selectors) > MaxSelectors {
		return fmt.Errorf("registration: entry: more than %d selectors", MaxSelectors)
	}
	for _, s := range e.Selectors {
		if err := s.Validate(); err != nil {
			return err
		}
	}
	if e.X509SVIDTTL < 0 || e.X509SVIDTTL > MaxTTL {
		return fmt.Errorf("registration: entry: X.509 SVID TTL %s out of range", e.X509SVIDTTL)
	}
	if e.JWTSVIDTTL < 0 || e.JWTSVIDTTL > MaxTTL {
		return fmt.Errorf("registration: entry: JWT SVID TTL %s out of range", e.JWTSVIDTTL)
	}
	if len(e.DNSNames) > MaxDNSNames {
		return fmt.Errorf("registration: entry: more than %d DNS names", MaxDNSNames)
	}
	for _, d := range e.DNSNames {
		if err := ValidateDNSName(d); err != nil {
			return err
		}
	}
	return nil
}

// ValidateDNSName checks a DNS SAN: labels of letters, digits and hyphens,
// optionally a leading "*." wildcard, at most 253 bytes.
func ValidateDNSName(d string) error {
	if d == "" || len(d) > 253 {
		return fmt.Errorf("registration: DNS name %q: empty or too long", truncate(d))
	}
	name := strings.TrimPrefix(d, "*.")
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("registration: DNS name %q: bad label %q", d, label)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return fmt.Errorf("registration: DNS name %q: bad character %q", d, r)
			}
		}
	}
	return nil
}

// Key identifies an entry for uniqueness: SPIFFE ID, parent and selector set.
func (e *Entry) Key() string {
	return e.SPIFFEID.String() + "\x00" + e.ParentID.String() + "\x00" + SelectorsKey(e.Selectors)
}
