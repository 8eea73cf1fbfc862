package nodeapi

import (
	"context"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/ca"
)

// BatchSignX509SVID signs workload SVIDs for entries authorised for the
// caller. Only the entry's SPIFFE ID is signed, never what the CSR asks for.
func (s *Server) BatchSignX509SVID(ctx context.Context, req *apiv1.BatchSignX509SVIDRequest) (*apiv1.BatchSignX509SVIDResponse, error) {
	rec, _, err := s.callerRecord(ctx)
	if err != nil {
		return nil, err
	}
	if len(req.GetRequests()) > MaxBatch {
		return nil, status.Errorf(codes.InvalidArgument, "at most %d SVIDs per batch", MaxBatch)
	}
	agentID, _ := spiffeid.FromString(rec.ID)
	authorized, _ := s.cfg.Entries.Authorized(agentID, rec.Selectors)
	resp := &apiv1.BatchSignX509SVIDResponse{Results: make([]*apiv1.SVIDResult, len(req.GetRequests()))}
	type issued struct {
		e      *registration.Entry
		serial string
		svid   *apiv1.X509SVID
	}
	done := make([]issued, 0, len(req.GetRequests()))
	// The whole batch is signed under one slot, so that a thousand agents
	// asking at once are served (nearly) in turn: each gets its SVIDs
	// after its own share of the CPU, instead of all of them after the
	// whole storm's, and past their deadlines.
	select {
	case s.signSlots <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	for i, r := range req.GetRequests() {
		res := &apiv1.SVIDResult{EntryId: r.GetEntryId()}
		resp.Results[i] = res
		e, ok := authorized[r.GetEntryId()]
		if !ok {
			res.Error = "entry not found or not authorised for this agent"
			continue
		}
		svid, serial, err := s.signEntry(ctx, e, r.GetCsr())
		if err != nil {
			res.Error = err.Error()
			continue
		}
		res.Svid = svid
		done = append(done, issued{e: e, serial: serial, svid: svid})
	}
	<-s.signSlots
	// Audited outside the slot: with fsync "always" a record waits for
	// the disk.
	for _, d := range done {
		s.cfg.Audit.Record(ctx, "issuance", map[string]any{
			"spiffe_id": d.e.SPIFFEID.String(), "entry_id": d.e.ID, "caller": rec.ID, "serial": d.serial,
			"expires_at": time.Unix(d.svid.ExpiresAt, 0).UTC().Format(time.RFC3339),
		})
	}
	return resp, nil
}

func (s *Server) signEntry(ctx context.Context, e *registration.Entry, csrDER []byte) (*apiv1.X509SVID, string, error) {
	if err := registration.CheckNotReserved(e.SPIFFEID); err != nil {
		// An entry stored before such entries were refused: never sign a
		// workload an SVID naming an agent or the server.
		s.cfg.Log.Warn("Refusing to sign an entry with a reserved SPIFFE ID; delete the entry", "entry_id", e.ID,
			"spiffe_id", e.SPIFFEID.String(), "error", err)
		return nil, "", err
	}
	csr, err := ca.ParseCSR(csrDER)
	if err != nil {
		return nil, "", err
	}
	ttl := e.X509SVIDTTL
	if ttl == 0 {
		ttl = s.cfg.DefaultSVIDTTL
	}
	p := ca.X509SVIDParams{ID: e.SPIFFEID, PublicKey: csr.PublicKey, TTL: ttl, DNSNames: e.DNSNames}
	start := time.Now()
	if rs, ok := s.cfg.Signer.(RawSigner); ok {
		// The certificate just made goes to the agent as it is: nothing
		// here reads it beyond its serial and expiry.
		iss, err := rs.SignX509SVIDRaw(ctx, p)
		if err != nil {
			return nil, "", err
		}
		s.cfg.Metrics.SVIDIssued("workload", time.Since(start))
		return &apiv1.X509SVID{SpiffeId: e.SPIFFEID.String(), CertChain: iss.Chain, ExpiresAt: iss.NotAfter.Unix()},
			iss.Serial.String(), nil
	}
	certs, err := s.cfg.Signer.SignX509SVID(ctx, p)
	if err != nil {
		return nil, "", err
	}
	s.cfg.Metrics.SVIDIssued("workload", time.Since(start))
	return svidProto(e.SPIFFEID, certs), certs[0].SerialNumber.String(), nil
}

// RawSigner is an optional power of a Signer (ca.CA has it): an SVID in
// DER with its serial and expiry, without parsing the certificate back.
type RawSigner interface {
	SignX509SVIDRaw(ctx context.Context, p ca.X509SVIDParams) (ca.IssuedX509SVID, error)
}
