package sds

import (
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/hallmarkid/hallmark/agent/cache"
)

// Protocol constants.
const (
	// SecretTypeURL is the type URL of SDS resources.
	SecretTypeURL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
	// SPIFFEValidatorName is the Envoy extension name of the SPIFFE
	// certificate validator (Envoy 1.18 and later).
	SPIFFEValidatorName = "envoy.tls.cert_validator.spiffe"
	// NodeMetadataDisableSPIFFE is the node metadata key with which one
	// Envoy asks for trusted_ca instead of the SPIFFE validator.
	NodeMetadataDisableSPIFFE = "disable_spiffe_cert_validation"
)

// useSPIFFEValidator reports whether bundles for node should be sent as
// the SPIFFE certificate validator: Envoy 1.18 or later as reported in
// user_agent_build_version, not disabled by configuration or by the node's
// metadata. Clients that do not report a build version (older Envoys, gRPC
// xDS clients) get trusted_ca, which every client understands.
func (h *Handler) useSPIFFEValidator(node *corev3.Node) bool {
	if h.cfg.DisableSPIFFECertValidation || node == nil {
		return false
	}
	if v, ok := node.GetMetadata().GetFields()[NodeMetadataDisableSPIFFE]; ok {
		switch k := v.GetKind().(type) {
		case *structpb.Value_BoolValue:
			if k.BoolValue {
				return false
			}
		case *structpb.Value_StringValue:
			if k.StringValue == "true" {
				return false
			}
		}
	}
	ver := node.GetUserAgentBuildVersion().GetVersion()
	if ver == nil {
		return false
	}
	return ver.GetMajorNumber() > 1 || ver.GetMajorNumber() == 1 && ver.GetMinorNumber() >= 18
}

// secret builds the Envoy Secret for r.
func (r *resource) secret() (*tlsv3.Secret, error) {
	switch r.kind {
	case resCert:
		chain, key := r.certPEM, r.keyPEM
		if r.svid != nil {
			var err error
			if chain, err = derChainPEM(r.svid.CertsDER); err != nil {
				return nil, fmt.Errorf("sds: SVID %s: %w", r.svid.ID, err)
			}
			key = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: r.svid.KeyDER})
		}
		return &tlsv3.Secret{Name: r.name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(chain),
			PrivateKey:       inline(key),
		}}}, nil
	case resValidation:
		vc := &tlsv3.CertificateValidationContext{}
		switch {
		case r.rootPEM != nil:
			vc.TrustedCa = inline(r.rootPEM)
		case r.spiffe:
			cfg := &tlsv3.SPIFFECertValidatorConfig{}
			for _, b := range r.bundles {
				cfg.TrustDomains = append(cfg.TrustDomains, &tlsv3.SPIFFECertValidatorConfig_TrustDomain{
					Name: b.TrustDomain.Name(), TrustBundle: inline(certsPEM(b.Certs)),
				})
			}
			a, err := anypb.New(cfg)
			if err != nil {
				return nil, fmt.Errorf("sds: marshal SPIFFE validator config: %w", err)
			}
			vc.CustomValidatorConfig = &corev3.TypedExtensionConfig{Name: SPIFFEValidatorName, TypedConfig: a}
		default:
			var all []byte
			for _, b := range r.bundles {
				all = append(all, certsPEM(b.Certs)...)
			}
			vc.TrustedCa = inline(all)
		}
		return &tlsv3.Secret{Name: r.name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: vc}}, nil
	}
	return nil, fmt.Errorf("sds: resource %q of unknown kind %d", r.name, r.kind)
}

// memoKey identifies a secret built from immutable cache objects.
type memoKey struct {
	name   string
	kind   resKind
	svid   *cache.SVID
	bundle *cache.Bundle
	spiffe bool
}

// maxMemo bounds the memo of built secrets; it is emptied when full.
const maxMemo = 4096

// memo holds built secrets shared by every stream that sends the same
// cache objects under the same name, so that a rotation seen by a thousand
// streams is PEM-encoded and marshalled once. Marshalling a message that
// is never mutated is safe from several goroutines.
type memo struct {
	mu sync.Mutex // guards m
	m  map[memoKey]*anypb.Any
}

// anySecret returns r's Secret wrapped for a response.
func (h *Handler) anySecret(r *resource) (*anypb.Any, error) {
	if r.certPEM != nil || r.rootPEM != nil || len(r.bundles) > 1 {
		return r.anySecret()
	}
	k := memoKey{name: r.name, kind: r.kind, svid: r.svid, spiffe: r.spiffe}
	if len(r.bundles) == 1 {
		k.bundle = r.bundles[0]
	}
	h.memo.mu.Lock()
	a := h.memo.m[k]
	h.memo.mu.Unlock()
	if a != nil {
		return a, nil
	}
	a, err := r.anySecret()
	if err != nil {
		return nil, err
	}
	h.memo.mu.Lock()
	if h.memo.m == nil || len(h.memo.m) >= maxMemo {
		h.memo.m = make(map[memoKey]*anypb.Any)
	}
	h.memo.m[k] = a
	h.memo.mu.Unlock()
	return a, nil
}

// anySecret builds r's Secret wrapped for a response.
func (r *resource) anySecret() (*anypb.Any, error) {
	s, err := r.secret()
	if err != nil {
		return nil, err
	}
	a, err := anypb.New(s)
	if err != nil {
		return nil, fmt.Errorf("sds: marshal secret %q: %w", r.name, err)
	}
	return a, nil
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// derChainPEM encodes concatenated DER certificates as PEM, one block
// each, without parsing them.
func derChainPEM(der []byte) ([]byte, error) {
	var out []byte
	for len(der) > 0 {
		var raw asn1.RawValue
		rest, err := asn1.Unmarshal(der, &raw)
		if err != nil {
			return nil, fmt.Errorf("certificate chain: %w", err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: raw.FullBytes})...)
		der = rest
	}
	return out, nil
}

// certsPEM encodes certificates as PEM.
func certsPEM(certs []*x509.Certificate) []byte {
	var out []byte
	for _, c := range certs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}
