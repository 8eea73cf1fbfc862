package client

import (
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

// ParseFederatedBundle turns a federated bundle pushed by the server into
// a bundle of its trust domain. A bundle without X.509 authorities and
// JWT keys parses to an empty bundle (spiffebundle.Bundle.Empty): the
// trust domain was removed or revoked. Any malformed part refuses the
// whole bundle; the trust domain is returned whenever it parsed, so that
// the caller can drop what it held for it.
func ParseFederatedBundle(p *apiv1.FederatedBundle) (spiffeid.TrustDomain, *spiffebundle.Bundle, error) {
	td, err := spiffeid.TrustDomainFromString(p.GetTrustDomain())
	if err != nil {
		return spiffeid.TrustDomain{}, nil, fmt.Errorf("client: federated bundle: trust domain %q: %w", truncate(p.GetTrustDomain()), err)
	}
	if td.IsZero() {
		return spiffeid.TrustDomain{}, nil, errors.New("client: federated bundle without a trust domain")
	}
	b := spiffebundle.New(td)
	if len(p.GetX509Authorities()) > 0 {
		certs, err := x509util.ParseChain(p.GetX509Authorities())
		if err != nil {
			return td, nil, fmt.Errorf("client: federated bundle %q: %w", td.Name(), err)
		}
		b.SetX509Authorities(certs)
	}
	jb, err := ParseJWTBundle(td, &apiv1.JWTBundle{Keys: p.GetJwtKeys()})
	if err != nil {
		return td, nil, fmt.Errorf("client: federated bundle %q: %w", td.Name(), err)
	}
	b.SetJWTAuthorities(jb.JWTAuthorities())
	if seq := p.GetSequenceNumber(); seq > 0 {
		b.SetSequenceNumber(uint64(seq))
	}
	return td, b, nil
}

func truncate(s string) string {
	if len(s) > 256 {
		return s[:256] + "..."
	}
	return s
}
