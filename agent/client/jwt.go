package client

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// MaxJWTKeys bounds the keys accepted in one JWT bundle from the server.
const MaxJWTKeys = 64

// NewJWTSVID asks the server to sign a JWT-SVID for an entry authorised for
// this agent. The gRPC status of a refusal is kept (errors.Unwrap gives it).
func (c *Client) NewJWTSVID(ctx context.Context, entryID string, audience []string) (*apiv1.JWTSVID, error) {
	ch, err := c.node()
	if err != nil {
		return nil, err
	}
	resp, err := apiv1.NewNodeClient(ch.conn).NewJWTSVID(ctx, &apiv1.NewJWTSVIDRequest{EntryId: entryID, Audience: audience})
	if err != nil {
		return nil, fmt.Errorf("client: new JWT-SVID: %w", ch.explain(err))
	}
	if resp.GetSvid().GetToken() == "" {
		return nil, errors.New("client: new JWT-SVID: empty response")
	}
	return resp.GetSvid(), nil
}

// ParseJWTBundle turns the JWT keys pushed by the server into a bundle for
// td. Every key must have a unique, non-empty ID and a PKIX public key;
// otherwise the whole bundle is refused.
func ParseJWTBundle(td spiffeid.TrustDomain, p *apiv1.JWTBundle) (*jwtbundle.Bundle, error) {
	if len(p.GetKeys()) > MaxJWTKeys {
		return nil, fmt.Errorf("client: JWT bundle has %d keys, at most %d accepted", len(p.GetKeys()), MaxJWTKeys)
	}
	b := jwtbundle.New(td)
	for _, k := range p.GetKeys() {
		if k.GetKeyId() == "" {
			return nil, errors.New("client: JWT bundle: key without an ID")
		}
		if b.HasJWTAuthority(k.GetKeyId()) {
			return nil, fmt.Errorf("client: JWT bundle: key ID %q twice", k.GetKeyId())
		}
		pub, err := x509.ParsePKIXPublicKey(k.GetPublicKey())
		if err != nil {
			return nil, fmt.Errorf("client: JWT bundle: key %q: %w", k.GetKeyId(), err)
		}
		if err := b.AddJWTAuthority(k.GetKeyId(), pub); err != nil {
			return nil, fmt.Errorf("client: JWT bundle: %w", err)
		}
	}
	return b, nil
}
