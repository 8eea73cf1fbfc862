package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// The entry JSON output follows SPIRE's (protojson of its types.Entry with
// proto names and unset fields emitted): IDs as {trust_domain, path},
// 64-bit integers as strings, fields Hallmark does not have at their zero
// value, so that jq pipelines written for SPIRE work unchanged.
type (
	entryJSON struct {
		ID             string         `json:"id"`
		SpiffeID       idJSON         `json:"spiffe_id"`
		ParentID       idJSON         `json:"parent_id"`
		Selectors      []selectorJSON `json:"selectors"`
		X509SVIDTTL    int32          `json:"x509_svid_ttl"`
		FederatesWith  []string       `json:"federates_with"`
		Admin          bool           `json:"admin"`
		Downstream     bool           `json:"downstream"`
		ExpiresAt      string         `json:"expires_at"`
		DNSNames       []string       `json:"dns_names"`
		RevisionNumber string         `json:"revision_number"`
		StoreSVID      bool           `json:"store_svid"`
		JWTSVIDTTL     int32          `json:"jwt_svid_ttl"`
		Hint           string         `json:"hint"`
		CreatedAt      string         `json:"created_at"`
	}
	entryListJSON struct {
		Entries       []entryJSON `json:"entries"`
		NextPageToken string      `json:"next_page_token"`
	}
	statusJSON struct {
		Code    int32  `json:"code"`
		Message string `json:"message"`
	}
	entryResultJSON struct {
		Status statusJSON `json:"status"`
		Entry  entryJSON  `json:"entry"`
	}
	entryResultsJSON struct {
		Results []entryResultJSON `json:"results"`
	}
	deleteResultJSON struct {
		Status statusJSON `json:"status"`
		ID     string     `json:"id"`
	}
	deleteResultsJSON struct {
		Results []deleteResultJSON `json:"results"`
	}
)

func toIDJSON(s string) idJSON {
	if id, err := spiffeid.FromString(s); err == nil {
		return idJSON{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
	}
	return idJSON{}
}

func toEntryJSON(e *apiv1.Entry) entryJSON {
	out := entryJSON{
		ID: e.GetId(), SpiffeID: toIDJSON(e.GetSpiffeId()), ParentID: toIDJSON(e.GetParentId()),
		Selectors: make([]selectorJSON, 0, len(e.GetSelectors())), X509SVIDTTL: e.GetX509SvidTtl(),
		FederatesWith: append([]string{}, e.GetFederatesWith()...), Admin: e.GetAdmin(), Downstream: e.GetDownstream(),
		ExpiresAt: "0", DNSNames: append([]string{}, e.GetDnsNames()...), RevisionNumber: strconv.FormatInt(e.GetRevision(), 10),
		JWTSVIDTTL: e.GetJwtSvidTtl(), Hint: e.GetHint(), CreatedAt: strconv.FormatInt(e.GetCreatedAt(), 10),
	}
	for _, s := range e.GetSelectors() {
		out.Selectors = append(out.Selectors, selectorJSON{Type: s.GetType(), Value: s.GetValue()})
	}
	return out
}

// parseDeleteFile reads SPIRE's `entry delete -file` format: {"ids": [...]}.
func parseDeleteFile(data []byte, name string) ([]string, error) {
	var doc struct {
		IDs *[]string `json:"ids"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if doc.IDs == nil || len(*doc.IDs) == 0 {
		return nil, fmt.Errorf(`%s: no entry IDs (want {"ids": ["..."]})`, name)
	}
	for i, id := range *doc.IDs {
		if id == "" {
			return nil, fmt.Errorf("%s: ids[%d] is empty", name, i)
		}
	}
	return *doc.IDs, nil
}
