package adminapi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/internal/apiconv"
	"github.com/hallmarkid/hallmark/registration"
)

// ListEntries lists the entries that match the request's filter (SPIRE's
// `entry show`), sorted.
func (s *Server) ListEntries(_ context.Context, req *apiv1.ListEntriesRequest) (*apiv1.ListEntriesResponse, error) {
	match, err := newEntryMatcher(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	resp := &apiv1.ListEntriesResponse{}
	for _, e := range s.cfg.Entries.All() {
		if match(e) {
			resp.Entries = append(resp.Entries, apiconv.EntryToProto(e))
		}
	}
	sortEntries(resp.Entries)
	return resp, nil
}

// CountEntries counts the entries ListEntries would list.
func (s *Server) CountEntries(_ context.Context, req *apiv1.ListEntriesRequest) (*apiv1.CountEntriesResponse, error) {
	match, err := newEntryMatcher(req)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	var n int32
	for _, e := range s.cfg.Entries.All() {
		if match(e) {
			n++
		}
	}
	return &apiv1.CountEntriesResponse{Count: n}, nil
}

// newEntryMatcher compiles an entry filter. Selectors and federated trust
// domains match as their match modes say (zero: superset, SPIRE's
// default); every other field set must be equal.
func newEntryMatcher(req *apiv1.ListEntriesRequest) (func(registration.Entry) bool, error) {
	var wantSel registration.SelectorSet
	if len(req.GetSelectors()) > 0 {
		sels, err := apiconv.SelectorsFromProto(req.GetSelectors())
		if err != nil {
			return nil, err
		}
		wantSel = registration.NewSelectorSet(sels...)
	}
	matchSel, err := selectorMatcher(req.GetSelectorMatch())
	if err != nil {
		return nil, err
	}
	var wantFed registration.SelectorSet
	if len(req.GetFederatesWith()) > 0 {
		wantFed = make(registration.SelectorSet, len(req.GetFederatesWith()))
		for _, s := range req.GetFederatesWith() {
			td, err := spiffeid.TrustDomainFromString(s)
			if err != nil {
				return nil, fmt.Errorf("federates with %q: %w", s, err)
			}
			wantFed[registration.Selector{Value: td.Name()}] = struct{}{}
		}
	}
	matchFed, err := selectorMatcher(req.GetFederatesWithMatch())
	if err != nil {
		return nil, err
	}
	return func(e registration.Entry) bool {
		switch {
		case req.GetId() != "" && e.ID != req.GetId():
			return false
		case req.GetSpiffeId() != "" && e.SPIFFEID.String() != req.GetSpiffeId():
			return false
		case req.GetParentId() != "" && e.ParentID.String() != req.GetParentId():
			return false
		case req.GetHint() != "" && e.Hint != req.GetHint():
			return false
		case req.Downstream != nil && e.Downstream != req.GetDownstream():
			return false
		case wantSel != nil && !matchSel(registration.NewSelectorSet(e.Selectors...), wantSel):
			return false
		}
		if wantFed != nil {
			have := make(registration.SelectorSet, len(e.FederatesWith))
			for _, td := range e.FederatesWith {
				have[registration.Selector{Value: td.Name()}] = struct{}{}
			}
			if !matchFed(have, wantFed) {
				return false
			}
		}
		return true
	}, nil
}

// codedError is an entry's failure with the gRPC code its result carries.
type codedError struct {
	code codes.Code
	err  error
}

func (e codedError) Error() string { return e.err.Error() }
func (e codedError) Unwrap() error { return e.err }

// codeOf returns the code of a failed entry: the one it was given, else
// InvalidArgument (the entry as sent cannot be stored).
func codeOf(err error) int32 {
	var ce codedError
	if errors.As(err, &ce) {
		return int32(ce.code)
	}
	return int32(codes.InvalidArgument)
}

// checkEntryPolicy refuses what Hallmark does not implement rather than
// store it and ignore it, and checks a caller-chosen entry ID (SPIRE's
// `entry create -entryID`) as the stores do, so that a bad one fails alone
// instead of rolling back a batch.
func checkEntryPolicy(e registration.Entry) error {
	if e.Admin {
		return errors.New("admin entries are not supported: Hallmark's admin API is served only on the server's local socket and no SVID grants access to it")
	}
	if e.Downstream {
		return errors.New("downstream entries are not supported: Hallmark does not sign CA certificates for downstream servers (use upstream_authority on the other server)")
	}
	if len(e.ID) > maxEntryIDLen {
		return fmt.Errorf("entry ID longer than %d bytes", maxEntryIDLen)
	}
	if strings.HasPrefix(e.ID, registration.RegistrarEntryIDPrefix) {
		return fmt.Errorf("entry ID %q: IDs starting with %q are reserved for the Kubernetes registrar (k8s_registrar), which owns those entries",
			e.ID, registration.RegistrarEntryIDPrefix)
	}
	for _, r := range e.ID {
		if r < 0x21 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("entry ID %q contains a space, control character or invalid UTF-8", e.ID)
		}
	}
	return nil
}
