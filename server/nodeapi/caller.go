package nodeapi

import (
	"context"
	"crypto/x509"
	"errors"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/server/datastore"
)

// callerAgent returns the agent ID of an mTLS caller.
func (s *Server) callerAgent(ctx context.Context) (spiffeid.ID, error) {
	id, _, err := s.callerCert(ctx)
	return id, err
}

// callerCert returns the agent ID and leaf certificate of an mTLS caller.
// A TLS connection outlives the certificate it was made with, so expiry
// is checked here, per call.
func (s *Server) callerCert(ctx context.Context) (spiffeid.ID, *x509.Certificate, error) {
	id, leaf, err := s.peerCert(ctx)
	if err != nil {
		return spiffeid.ID{}, nil, err
	}
	if now := s.cfg.Clock(); now.After(leaf.NotAfter) {
		return spiffeid.ID{}, nil, status.Errorf(codes.Unauthenticated, "agent SVID expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return id, leaf, nil
}

func (s *Server) peerCert(ctx context.Context) (spiffeid.ID, *x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, nil, status.Error(codes.Unauthenticated, "no peer")
	}
	tlsInfo, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(tlsInfo.State.VerifiedChains) == 0 || len(tlsInfo.State.VerifiedChains[0]) == 0 {
		return spiffeid.ID{}, nil, status.Error(codes.Unauthenticated, "an agent SVID is required")
	}
	leaf := tlsInfo.State.VerifiedChains[0][0]
	id, err := x509svid.IDFromCert(leaf)
	if err != nil {
		return spiffeid.ID{}, nil, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	if err := s.checkAgentID(id); err != nil {
		return spiffeid.ID{}, nil, status.Error(codes.PermissionDenied, "caller is not an agent")
	}
	return id, leaf, nil
}

// callerRecord returns the record of the calling agent, refusing evicted
// agents and SVIDs other than the latest one issued.
func (s *Server) callerRecord(ctx context.Context) (datastore.Agent, *x509.Certificate, error) {
	id, leaf, err := s.callerCert(ctx)
	if err != nil {
		return datastore.Agent{}, nil, err
	}
	rec, err := s.cfg.Agents.GetAgent(ctx, id.String())
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		s.records.forget(id.String())
		return datastore.Agent{}, nil, status.Errorf(codes.PermissionDenied, "agent %s is not attested (evicted?)", id)
	case err == nil:
		s.records.confirmed(rec)
	default:
		cached, age, ok := s.records.fallback(id.String())
		if !ok {
			return datastore.Agent{}, nil, status.Errorf(codes.Unavailable, "look up agent: %v", err)
		}
		s.cfg.Log.Warn("Datastore unavailable; using the agent record last read from it", "agent_id", id.String(),
			"age", age.Round(time.Second), "error", err)
		rec = cached
	}
	if rec.Banned {
		return datastore.Agent{}, nil, bannedError(rec.ID)
	}
	switch serial := leaf.SerialNumber.String(); {
	case serial == rec.SerialNumber:
	case rec.NewSerialNumber != "" && serial == rec.NewSerialNumber:
		// The agent's first use of the SVID its last renewal issued: from
		// now on it alone is the agent's, and the older one is dead.
		if rec, err = s.promote(ctx, rec); err != nil {
			return datastore.Agent{}, nil, err
		}
	default:
		// A superseded SVID (the agent renewed and used the new one, or
		// someone holds an old copy), or not an agent SVID at all (a
		// workload SVID whose ID lies in the agent namespace): only the
		// SVIDs the record names are the agent's credential.
		return datastore.Agent{}, nil, status.Error(codes.Unauthenticated, "agent SVID superseded by a newer one")
	}
	return rec, leaf, nil
}

// promote records that the agent uses the SVID its last renewal issued
// and returns the record as it now stands. When the datastore cannot be
// written the record is returned promoted in memory: both SVIDs stay the
// agent's until the write succeeds at a later call.
func (s *Server) promote(ctx context.Context, rec datastore.Agent) (datastore.Agent, error) {
	next := rec
	next.SerialNumber, next.NewSerialNumber = rec.NewSerialNumber, ""
	err := s.cfg.Agents.PromoteAgentSerial(ctx, rec.ID, rec.NewSerialNumber)
	switch {
	case err == nil:
		s.records.confirmed(next)
	case errors.Is(err, datastore.ErrBanned):
		return datastore.Agent{}, bannedError(rec.ID)
	case errors.Is(err, datastore.ErrNotFound):
		// Evicted, or the record moved on meanwhile (a fresh attestation
		// or another renewal): this SVID is no longer the agent's.
		s.records.forget(rec.ID)
		return datastore.Agent{}, status.Error(codes.Unauthenticated, "agent SVID superseded by a newer one")
	default:
		s.cfg.Log.Warn("Recording the agent's new SVID failed; retrying at its next call", "agent_id", rec.ID, "error", err)
	}
	return next, nil
}
