package registration

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// MaxIDLen is the longest SPIFFE ID accepted (the spec's URI limit).
const MaxIDLen = 2048

// ParseID parses and validates a SPIFFE ID per the SPIFFE ID specification:
// lowercase trust domain, no empty, "." or ".." path segments, no
// percent-encoding, query or fragment, at most MaxIDLen bytes.
func ParseID(s string) (spiffeid.ID, error) {
	if len(s) > MaxIDLen {
		return spiffeid.ID{}, fmt.Errorf("registration: SPIFFE ID longer than %d bytes", MaxIDLen)
	}
	id, err := spiffeid.FromString(s)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("registration: SPIFFE ID %q: %w", truncate(s), err)
	}
	return id, nil
}

// ParseIDInDomain parses s and checks that it is a member of td.
func ParseIDInDomain(s string, td spiffeid.TrustDomain) (spiffeid.ID, error) {
	id, err := ParseID(s)
	if err != nil {
		return spiffeid.ID{}, err
	}
	if id.TrustDomain() != td {
		return spiffeid.ID{}, fmt.Errorf("registration: SPIFFE ID %q is not in trust domain %q", s, td)
	}
	return id, nil
}

// ReservedPaths are the paths, in every trust domain, that no registration
// entry may name, nor anything below them: /agent holds the agents' own
// IDs (spiffe://<td>/agent/<attestor>/...), /hallmark the server's
// (spiffe://<td>/hallmark/server). An entry there would give a workload an
// SVID naming an agent or the server.
var ReservedPaths = []string{"/agent", "/hallmark"}

// CheckNotReserved returns an error if id is one of ReservedPaths or lies
// below one.
func CheckNotReserved(id spiffeid.ID) error {
	p := id.Path()
	for _, r := range ReservedPaths {
		if p == r || strings.HasPrefix(p, r+"/") {
			return fmt.Errorf("registration: SPIFFE ID %q is reserved: spiffe://%s%s/... names agents and the server, never a workload",
				truncate(id.String()), id.TrustDomain().Name(), r)
		}
	}
	return nil
}

// RegistrarEntryIDPrefix starts the IDs of the entries the Kubernetes
// registrar (server/k8sregistrar) owns; no operator may create or update an
// entry with such an ID, so the registrar's entries and an operator's never
// collide.
const RegistrarEntryIDPrefix = "k8sreg:"

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
