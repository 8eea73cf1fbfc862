package adminapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// maxEntryIDLen is the longest entry ID an update may name (the stores'
// limit).
const maxEntryIDLen = 255

// UpdateEntries replaces entries, each identified by its ID, with the
// content given (every field; revision and created_at are ignored). Each
// entry succeeds or fails alone, in request order; an entry changed by an
// earlier element of the same batch is changed again by a later one.
//
// Entry changes made through this API (updates and deletes) hold
// entryMu from the store write to the cache update, so the cache sees
// them in commit order even on a store that has no change feed.
func (s *Server) UpdateEntries(ctx context.Context, req *apiv1.UpdateEntriesRequest) (*apiv1.UpdateEntriesResponse, error) {
	if len(req.GetEntries()) > MaxEntriesPerCall {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d entries per call", MaxEntriesPerCall)
	}
	results := make([]*apiv1.EntryResult, len(req.GetEntries()))
	var updated, refused int
	for i, p := range req.GetEntries() {
		e, err := s.checkUpdate(p)
		if err == nil {
			e, err = s.updateOne(ctx, e)
		}
		if err != nil {
			refused++
			results[i] = &apiv1.EntryResult{Entry: p, Error: err.Error(), Code: codeOf(err)}
			s.audit(ctx, map[string]any{"action": "entry_update", "entry_id": p.GetId(), "result": "rejected", "reason": err.Error()})
			if ctx.Err() != nil {
				for j := i + 1; j < len(results); j++ {
					results[j] = &apiv1.EntryResult{Entry: req.GetEntries()[j], Error: "not attempted: " + ctx.Err().Error(), Code: int32(codes.Canceled)}
				}
				break
			}
			continue
		}
		updated++
		results[i] = &apiv1.EntryResult{Entry: apiconv.EntryToProto(e)}
		sels := make([]string, len(e.Selectors))
		for j, sel := range e.Selectors {
			sels[j] = sel.Type + ":" + sel.Value
		}
		s.audit(ctx, map[string]any{"action": "entry_update", "entry_id": e.ID, "spiffe_id": e.SPIFFEID.String(),
			"parent_id": e.ParentID.String(), "selectors": sels, "x509_svid_ttl": int64(e.X509SVIDTTL.Seconds()),
			"jwt_svid_ttl": int64(e.JWTSVIDTTL.Seconds()), "revision": e.Revision, "result": "ok"})
	}
	if updated+refused > 1 {
		s.cfg.Log.Info("Entries updated", "updated", updated, "refused", refused)
	}
	return &apiv1.UpdateEntriesResponse{Results: results}, nil
}

// checkUpdate converts and validates one entry of an update, by the rules
// CreateEntries applies, plus a required ID.
func (s *Server) checkUpdate(p *apiv1.Entry) (registration.Entry, error) {
	if p.GetId() == "" {
		return registration.Entry{}, errors.New("entry ID is required")
	}
	if len(p.GetId()) > maxEntryIDLen {
		return registration.Entry{}, fmt.Errorf("entry ID longer than %d bytes", maxEntryIDLen)
	}
	e, err := apiconv.EntryFromProto(p)
	if err != nil {
		return registration.Entry{}, err
	}
	e.Revision, e.CreatedAt = 0, time.Time{}
	if err := checkEntryPolicy(e); err != nil {
		return registration.Entry{}, err
	}
	if err := e.Validate(s.cfg.TrustDomain); err != nil {
		return registration.Entry{}, err
	}
	if e.SPIFFEID == s.cfg.ServerID {
		return registration.Entry{}, errors.New("the server's own SPIFFE ID cannot be registered")
	}
	if slices.Contains(e.FederatesWith, s.cfg.TrustDomain) {
		return registration.Entry{}, fmt.Errorf("federates with %q: that is this server's own trust domain", s.cfg.TrustDomain.Name())
	}
	return e, nil
}

// updateOne stores one update and puts it in the cache, in that order,
// under entryMu.
func (s *Server) updateOne(ctx context.Context, e registration.Entry) (registration.Entry, error) {
	s.entryMu.Lock()
	defer s.entryMu.Unlock()
	got, err := s.cfg.Store.UpdateEntry(ctx, e)
	switch {
	case errors.Is(err, datastore.ErrNotFound):
		return registration.Entry{}, codedError{codes.NotFound, fmt.Errorf("entry %q not found", e.ID)}
	case errors.Is(err, datastore.ErrAlreadyExists):
		return registration.Entry{}, codedError{codes.AlreadyExists, errors.New("similar entry already exists")}
	case err != nil:
		s.cfg.Log.Warn("Updating an entry failed", "entry_id", e.ID, "error", err)
		return registration.Entry{}, codedError{codes.Internal, fmt.Errorf("update failed: %w", err)}
	}
	s.cfg.Entries.Apply([]registration.Entry{got}, nil, got.Revision)
	return got, nil
}
