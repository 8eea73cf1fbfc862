// Package apiconv converts between the wire types in api/v1 and the domain
// types in registration. Conversions from the wire validate what they read.
//
// It must not import server/ or agent/.
package apiconv

import (
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/registration"
)

// SelectorsToProto converts selectors to the wire form.
func SelectorsToProto(ss []registration.Selector) []*apiv1.Selector {
	out := make([]*apiv1.Selector, len(ss))
	for i, s := range ss {
		out[i] = &apiv1.Selector{Type: s.Type, Value: s.Value}
	}
	return out
}

// SelectorsFromProto converts and validates selectors from the wire.
func SelectorsFromProto(ps []*apiv1.Selector) ([]registration.Selector, error) {
	out := make([]registration.Selector, len(ps))
	for i, p := range ps {
		s := registration.Selector{Type: p.GetType(), Value: p.GetValue()}
		if err := s.Validate(); err != nil {
			return nil, err
		}
		out[i] = s
	}
	return out, nil
}

// EntryToProto converts an entry to the wire form.
func EntryToProto(e registration.Entry) *apiv1.Entry {
	fw := make([]string, len(e.FederatesWith))
	for i, td := range e.FederatesWith {
		fw[i] = td.IDString()
	}
	var created int64
	if !e.CreatedAt.IsZero() {
		created = e.CreatedAt.Unix()
	}
	return &apiv1.Entry{
		Id:            e.ID,
		SpiffeId:      e.SPIFFEID.String(),
		ParentId:      e.ParentID.String(),
		Selectors:     SelectorsToProto(e.Selectors),
		X509SvidTtl:   int32(e.X509SVIDTTL / time.Second),
		JwtSvidTtl:    int32(e.JWTSVIDTTL / time.Second),
		DnsNames:      e.DNSNames,
		Admin:         e.Admin,
		Downstream:    e.Downstream,
		Revision:      e.Revision,
		CreatedAt:     created,
		FederatesWith: fw,
		Hint:          e.Hint,
	}
}

// EntryFromProto converts an entry from the wire, validating IDs and
// selectors (not trust-domain membership: see registration.Entry.Validate).
func EntryFromProto(p *apiv1.Entry) (registration.Entry, error) {
	id, err := registration.ParseID(p.GetSpiffeId())
	if err != nil {
		return registration.Entry{}, err
	}
	parent, err := registration.ParseID(p.GetParentId())
	if err != nil {
		return registration.Entry{}, fmt.Errorf("parent: %w", err)
	}
	sels, err := SelectorsFromProto(p.GetSelectors())
	if err != nil {
		return registration.Entry{}, err
	}
	var fw []spiffeid.TrustDomain
	for _, s := range p.GetFederatesWith() {
		td, err := spiffeid.TrustDomainFromString(s)
		if err != nil {
			return registration.Entry{}, fmt.Errorf("federates with %q: %w", s, err)
		}
		fw = append(fw, td)
	}
	if p.GetX509SvidTtl() < 0 || p.GetJwtSvidTtl() < 0 {
		return registration.Entry{}, fmt.Errorf("negative TTL")
	}
	var created time.Time
	if p.GetCreatedAt() != 0 {
		created = time.Unix(p.GetCreatedAt(), 0)
	}
	return registration.Entry{
		ID:            p.GetId(),
		SPIFFEID:      id,
		ParentID:      parent,
		Selectors:     sels,
		X509SVIDTTL:   time.Duration(p.GetX509SvidTtl()) * time.Second,
		JWTSVIDTTL:    time.Duration(p.GetJwtSvidTtl()) * time.Second,
		DNSNames:      p.GetDnsNames(),
		FederatesWith: fw,
		Admin:         p.GetAdmin(),
		Downstream:    p.GetDownstream(),
		Hint:          p.GetHint(),
		Revision:      p.GetRevision(),
		CreatedAt:     created,
	}, nil
}
