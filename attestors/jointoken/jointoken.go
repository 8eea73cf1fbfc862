// Package jointoken is the join-token node attestor: an operator generates a
// single-use token with a TTL, the agent presents it once, and the server
// consumes it atomically. Both halves live here.
//
// It must not import server/ or agent/.
package jointoken

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// Type is the attestation type on the wire.
const Type = "join_token"

// MaxTokenLen bounds the token accepted from the network.
const MaxTokenLen = 256

// ErrInvalidToken is the one error for unknown, used and expired tokens,
// so a caller learns nothing about which it was.
var ErrInvalidToken = errors.New("jointoken: invalid or expired join token")

// Generate returns a fresh random token (128 bits, hex).
func Generate() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("jointoken: generate: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// AgentID returns the agent ID a token yields.
func AgentID(td spiffeid.TrustDomain, token string) (spiffeid.ID, error) {
	id, err := spiffeid.FromSegments(td, "agent", Type, token)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("jointoken: agent ID: %w", err)
	}
	return id, nil
}

// TokenConsumer is the part of the datastore the verifier needs.
type TokenConsumer interface {
	ConsumeJoinToken(ctx context.Context, token string, now time.Time) (datastore.JoinToken, error)
}

// Verifier is the server half.
type Verifier struct {
	store TokenConsumer
	now   func() time.Time
}

// NewVerifier returns a verifier consuming tokens from store. now may be nil.
func NewVerifier(store TokenConsumer, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	return &Verifier{store: store, now: now}
}

// Type implements attestors.NodeVerifier.
func (*Verifier) Type() string { return Type }

// Verify consumes the token. Join tokens are single use: renewal with one
// is refused, and the agent cannot re-attest once its SVID expired.
func (v *Verifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	if req.Renewal {
		return attestors.Result{}, errors.New("jointoken: join tokens cannot re-attest")
	}
	token := string(req.Payload)
	if token == "" || len(token) > MaxTokenLen || !validToken(token) {
		return attestors.Result{}, ErrInvalidToken
	}
	if _, err := v.store.ConsumeJoinToken(ctx, token, v.now()); err != nil {
		if errors.Is(err, datastore.ErrNotFound) {
			return attestors.Result{}, ErrInvalidToken
		}
		return attestors.Result{}, fmt.Errorf("jointoken: consume: %w", err)
	}
	id, err := AgentID(req.TrustDomain, token)
	if err != nil {
		return attestors.Result{}, err
	}
	return attestors.Result{
		AgentID:   id,
		Selectors: []registration.Selector{{Type: Type, Value: token}},
		Evidence:  map[string]string{"token_id": token},
	}, nil
}

// validToken reports whether token only has characters valid in a SPIFFE
// ID path segment, so the agent ID derived from it is well formed.
func validToken(token string) bool {
	for _, r := range token {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Collector is the agent half.
type Collector struct{ token string }

// NewCollector returns a collector presenting token.
func NewCollector(token string) *Collector { return &Collector{token: token} }

// Type implements attestors.NodeCollector.
func (*Collector) Type() string { return Type }

// Payload returns the token.
func (c *Collector) Payload(context.Context, attestors.CollectRequest) ([]byte, error) {
	if c.token == "" {
		return nil, errors.New("jointoken: no join token configured")
	}
	return []byte(c.token), nil
}

// Answer is never called: the server sends no challenge.
func (*Collector) Answer(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("jointoken: unexpected challenge")
}
