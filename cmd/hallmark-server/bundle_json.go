package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"sort"
	"strconv"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
)

// The bundle JSON output follows SPIRE's (protojson of its types.Bundle):
// DER and keys base64, 64-bit integers as strings, every field present.
type (
	x509AuthorityJSON struct {
		ASN1    []byte `json:"asn1"`
		Tainted bool   `json:"tainted"`
	}
	jwtAuthorityJSON struct {
		PublicKey []byte `json:"public_key"`
		KeyID     string `json:"key_id"`
		ExpiresAt string `json:"expires_at"`
		Tainted   bool   `json:"tainted"`
	}
	bundleJSON struct {
		TrustDomain     string              `json:"trust_domain"`
		X509Authorities []x509AuthorityJSON `json:"x509_authorities"`
		JWTAuthorities  []jwtAuthorityJSON  `json:"jwt_authorities"`
		RefreshHint     string              `json:"refresh_hint"`
		SequenceNumber  string              `json:"sequence_number"`
	}
	bundleSetResultJSON struct {
		Status statusJSON  `json:"status"`
		Bundle *bundleJSON `json:"bundle"`
	}
	bundleSetJSON struct {
		Results []bundleSetResultJSON `json:"results"`
	}
	bundleDeleteResultJSON struct {
		Status      statusJSON `json:"status"`
		TrustDomain string     `json:"trust_domain"`
	}
	bundleDeleteJSON struct {
		Results []bundleDeleteResultJSON `json:"results"`
	}
	bundleListJSON struct {
		Bundles       []bundleJSON `json:"bundles"`
		NextPageToken string       `json:"next_page_token"`
	}
)

// ownBundleJSON is the server's bundle: its X.509 authorities (tainted
// ones marked) and the JWT keys it publishes.
func ownBundleJSON(ctx context.Context, c apiv1.AdminClient, b *apiv1.Bundle) (bundleJSON, error) {
	out := bundleJSON{TrustDomain: b.GetTrustDomain(), X509Authorities: []x509AuthorityJSON{}, JWTAuthorities: []jwtAuthorityJSON{},
		RefreshHint: strconv.FormatInt(b.GetRefreshHint(), 10), SequenceNumber: strconv.FormatInt(b.GetSequenceNumber(), 10)}
	for _, der := range b.GetX509Authorities() {
		a := x509AuthorityJSON{ASN1: der}
		if cert, err := x509.ParseCertificate(der); err == nil {
			for _, skid := range b.GetTaintedAuthorityKeyIds() {
				a.Tainted = a.Tainted || (len(skid) > 0 && bytes.Equal(skid, cert.SubjectKeyId))
			}
		}
		out.X509Authorities = append(out.X509Authorities, a)
	}
	keys, err := c.ListJWTAuthorities(ctx, &apiv1.ListLocalAuthoritiesRequest{})
	if err != nil {
		return out, err
	}
	for _, k := range keys.GetAuthorities() {
		out.JWTAuthorities = append(out.JWTAuthorities, jwtAuthorityJSON{PublicKey: k.GetPublicKey(), KeyID: k.GetAuthorityId(),
			ExpiresAt: strconv.FormatInt(k.GetNotAfter(), 10), Tainted: k.GetTainted()})
	}
	return out, nil
}

// federatedBundleJSON converts a SPIFFE bundle document.
func federatedBundleJSON(doc *apiv1.BundleDocument) (bundleJSON, error) {
	out := bundleJSON{TrustDomain: doc.GetTrustDomain(), X509Authorities: []x509AuthorityJSON{}, JWTAuthorities: []jwtAuthorityJSON{},
		RefreshHint: "0", SequenceNumber: "0"}
	td, err := spiffeid.TrustDomainFromString(doc.GetTrustDomain())
	if err != nil {
		return out, err
	}
	sb, err := spiffebundle.Parse(td, doc.GetDocument())
	if err != nil {
		return out, err
	}
	for _, c := range sb.X509Authorities() {
		out.X509Authorities = append(out.X509Authorities, x509AuthorityJSON{ASN1: c.Raw})
	}
	kids := make([]string, 0, len(sb.JWTAuthorities()))
	for kid := range sb.JWTAuthorities() {
		kids = append(kids, kid)
	}
	sort.Strings(kids)
	for _, kid := range kids {
		pub, err := x509.MarshalPKIXPublicKey(sb.JWTAuthorities()[kid])
		if err != nil {
			return out, err
		}
		out.JWTAuthorities = append(out.JWTAuthorities, jwtAuthorityJSON{PublicKey: pub, KeyID: kid, ExpiresAt: "0"})
	}
	if h, ok := sb.RefreshHint(); ok {
		out.RefreshHint = strconv.FormatInt(int64(h.Seconds()), 10)
	}
	if s, ok := sb.SequenceNumber(); ok {
		out.SequenceNumber = strconv.FormatUint(s, 10)
	}
	return out, nil
}
