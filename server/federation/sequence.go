package federation

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// SequenceKey is the datastore KV key of the Sequencer's state.
const SequenceKey = "federation/own_bundle_sequence"

// Sequencer numbers the versions of this trust domain's own bundle for
// spiffe_sequence: the number grows by one whenever the set of X.509 or
// JWT authorities changes (order does not matter). The state lives in the
// KV store, so the number survives restarts and servers sharing one
// database agree on it once they agree on the authorities.
type Sequencer struct {
	kv  KV
	log *slog.Logger

	mu     sync.Mutex // guards the fields that follow
	digest string
	seq    uint64
}

// NewSequencer returns a Sequencer keeping its state in kv.
func NewSequencer(kv KV, log *slog.Logger) *Sequencer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Sequencer{kv: kv, log: log}
}

type sequenceState struct {
	Sequence uint64 `json:"sequence"`
	Digest   string `json:"digest"`
}

// Sequence returns the sequence number of the bundle made of certs and
// jwt, bumping the stored number when they differ from the stored digest.
// The store is read only when the authorities differ from the last call.
func (s *Sequencer) Sequence(ctx context.Context, certs []*x509.Certificate, jwt map[string]crypto.PublicKey) (uint64, error) {
	digest, err := authoritiesDigest(certs, jwt)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if digest == s.digest {
		return s.seq, nil
	}
	var st sequenceState
	data, err := s.kv.GetKV(ctx, SequenceKey)
	switch {
	case err == nil:
		if err := json.Unmarshal(data, &st); err != nil {
			return s.seq, fmt.Errorf("federation: sequence state: %w", err)
		}
	case !errors.Is(err, datastore.ErrNotFound):
		return s.seq, fmt.Errorf("federation: read sequence state: %w", err)
	}
	if st.Digest != digest {
		st = sequenceState{Sequence: max(st.Sequence, s.seq) + 1, Digest: digest}
		data, err := json.Marshal(st)
		if err != nil {
			return s.seq, err
		}
		if err := s.kv.PutKV(ctx, SequenceKey, data); err != nil {
			return s.seq, fmt.Errorf("federation: write sequence state: %w", err)
		}
		s.log.Info("Own bundle changed", "sequence", st.Sequence, "x509_authorities", len(certs), "jwt_authorities", len(jwt))
	}
	s.digest, s.seq = digest, st.Sequence
	return s.seq, nil
}

// Source adapts certs and the Sequencer to EndpointConfig.Bundle. When
// the store fails, the last sequence number is served and the error
// logged: peers then refuse the changed keys under an old number and
// retry, which is the safe way to fail.
func (s *Sequencer) Source(certs func() []*x509.Certificate, jwt func() map[string]crypto.PublicKey) func() ([]*x509.Certificate, uint64) {
	return func() ([]*x509.Certificate, uint64) {
		cs := certs()
		var keys map[string]crypto.PublicKey
		if jwt != nil {
			keys = jwt()
		}
		seq, err := s.Sequence(context.Background(), cs, keys)
		if err != nil {
			s.log.Error("Cannot number the own bundle", "error", err)
		}
		return cs, seq
	}
}

func authoritiesDigest(certs []*x509.Certificate, jwt map[string]crypto.PublicKey) (string, error) {
	var parts [][]byte
	for _, c := range certs {
		parts = append(parts, append([]byte("x509:"), c.Raw...))
	}
	for kid, k := range jwt {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("federation: JWT authority %q: %w", kid, err)
		}
		parts = append(parts, append([]byte("jwt:"+kid+":"), der...))
	}
	slices.SortFunc(parts, bytes.Compare)
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
