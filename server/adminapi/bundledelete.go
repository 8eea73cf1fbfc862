package adminapi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/federation"
)

// The modes of DeleteFederatedBundle (SPIRE's `bundle delete -mode`).
const (
	DeleteModeRestrict   = "restrict"
	DeleteModeDissociate = "dissociate"
	DeleteModeDelete     = "delete"
)

// DeleteFederatedBundle removes a static bundle. Entries whose
// federates_with names its trust domain decide, by mode, as in SPIRE:
// restrict (the default) refuses while any exist, dissociate removes the
// trust domain from them, delete deletes them. Entries are changed only
// once the bundle is known to be deletable, and before it is deleted, so
// a failure leaves no entry federating with a trust domain that is gone.
func (s *Server) DeleteFederatedBundle(ctx context.Context, req *apiv1.DeleteFederatedBundleRequest) (*apiv1.DeleteFederatedBundleResponse, error) {
	const action = "bundle_delete"
	td, err := s.trustDomain(req.GetTrustDomain())
	if err != nil {
		return nil, s.refuse(ctx, action, req.GetTrustDomain(), err)
	}
	mode := req.GetMode()
	switch mode {
	case "":
		mode = DeleteModeRestrict
	case DeleteModeRestrict, DeleteModeDissociate, DeleteModeDelete:
	default:
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.InvalidArgument,
			"unknown delete mode %q (restrict, dissociate or delete)", mode))
	}
	if s.cfg.Federation == nil {
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.NotFound, "no bundle of trust domain %q", td.Name()))
	}
	if st, ok := s.relationship(td); !ok || !st.GetStatic() {
		// Not deletable: DeleteBundle says why, changing nothing.
		return nil, s.refuse(ctx, action, td.Name(), deleteBundleStatus(s.cfg.Federation.DeleteBundle(ctx, td)))
	}
	federated := s.federatedEntries(td)
	if len(federated) > 0 && mode == DeleteModeRestrict {
		return nil, s.refuse(ctx, action, td.Name(), status.Errorf(codes.FailedPrecondition,
			"cannot delete the bundle of %q: %d registration entr%s federate with it (-mode dissociate removes it from them, -mode delete deletes them)",
			td.Name(), len(federated), map[bool]string{true: "y", false: "ies"}[len(federated) == 1]))
	}
	changed, err := s.releaseEntries(ctx, td, mode, federated)
	if err != nil {
		s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name(), "mode": mode, "entries_changed": changed,
			"result": "failed", "reason": err.Error()})
		return nil, status.Errorf(codes.Internal, "bundle of %q not deleted: %s entries: %v (%d changed)", td.Name(), mode, err, changed)
	}
	if err := s.cfg.Federation.DeleteBundle(ctx, td); err != nil {
		return nil, s.refuse(ctx, action, td.Name(), deleteBundleStatus(err))
	}
	s.audit(ctx, map[string]any{"action": action, "trust_domain": td.Name(), "mode": mode, "entries_changed": changed})
	s.cfg.Log.Info("Federated bundle deleted by an operator", "trust_domain", td.Name(), "mode", mode, "entries_changed", changed)
	return &apiv1.DeleteFederatedBundleResponse{EntriesChanged: int32(min(changed, 1<<30))}, nil
}

func deleteBundleStatus(err error) error {
	if err == nil {
		return status.Error(codes.Internal, "bundle unexpectedly deletable")
	}
	code := codes.FailedPrecondition
	if errors.Is(err, federation.ErrUnknownTrustDomain) {
		code = codes.NotFound
	}
	return status.Errorf(code, "%v", err)
}

// federatedEntries returns the entries whose federates_with names td.
func (s *Server) federatedEntries(td spiffeid.TrustDomain) []registration.Entry {
	var out []registration.Entry
	for _, e := range s.cfg.Entries.All() {
		if slices.Contains(e.FederatesWith, td) {
			out = append(out, e)
		}
	}
	return out
}

// releaseEntries dissociates td from entries, or deletes them, and
// returns how many it changed. An entry already gone counts as done.
func (s *Server) releaseEntries(ctx context.Context, td spiffeid.TrustDomain, mode string, entries []registration.Entry) (int, error) {
	changed := 0
	for _, e := range entries {
		switch mode {
		case DeleteModeDissociate:
			e.FederatesWith = slices.DeleteFunc(slices.Clone(e.FederatesWith), func(t spiffeid.TrustDomain) bool { return t == td })
			e.Revision, e.CreatedAt = 0, time.Time{}
			_, err := s.updateOne(ctx, e)
			if err != nil && codeOf(err) == int32(codes.NotFound) {
				continue
			}
			if err != nil {
				return changed, fmt.Errorf("entry %s: %w", e.ID, err)
			}
			s.audit(ctx, map[string]any{"action": "entry_update", "entry_id": e.ID, "spiffe_id": e.SPIFFEID.String(),
				"dissociated_from": td.Name(), "result": "ok"})
		case DeleteModeDelete:
			if err := s.deleteOne(ctx, e.ID); errors.Is(err, datastore.ErrNotFound) {
				continue
			} else if err != nil {
				return changed, fmt.Errorf("entry %s: %w", e.ID, err)
			}
			s.audit(ctx, map[string]any{"action": "entry_delete", "entry_id": e.ID, "spiffe_id": e.SPIFFEID.String(),
				"federated_with": td.Name()})
		}
		changed++
	}
	return changed, nil
}

// deleteOne deletes an entry from the store, then the cache, under
// entryMu.
func (s *Server) deleteOne(ctx context.Context, id string) error {
	s.entryMu.Lock()
	defer s.entryMu.Unlock()
	e, err := s.cfg.Store.DeleteEntry(ctx, id)
	if err != nil {
		return err
	}
	s.cfg.Entries.Apply(nil, []string{e.ID}, 0)
	return nil
}
