package oidc

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// Paths served below the issuer's path.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	KeysPath      = "/keys"
)

// Discovery is the subset of the OpenID Provider Metadata relying parties
// read for token verification.
type Discovery struct {
	Issuer                           string   `json:"issuer"`
	JWKSURI                          string   `json:"jwks_uri"`
	AuthorizationEndpoint            string   `json:"authorization_endpoint"`
	ResponseTypesSupported           []string `json:"response_types_supported"`
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

type handler struct {
	prefix string
	doc    []byte
	keys   func() map[string]crypto.PublicKey
}

// Handler returns the discovery and JWKS handler for issuer, an https URL
// (http only for loopback hosts, for tests) without query or fragment.
// keys returns the current JWT signing keys by key ID; it is called per
// request, so rotation shows at once.
func Handler(issuer string, keys func() map[string]crypto.PublicKey) (http.Handler, error) {
	if keys == nil {
		return nil, errors.New("oidc: keys function is required")
	}
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, fmt.Errorf("oidc: issuer: %w", err)
	}
	switch {
	case u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Hostname())):
		return nil, fmt.Errorf("oidc: issuer %q must be an https URL", issuer)
	case u.Host == "":
		return nil, fmt.Errorf("oidc: issuer %q has no host", issuer)
	case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
		return nil, fmt.Errorf("oidc: issuer %q must not have a query, fragment or user info", issuer)
	}
	issuer = strings.TrimSuffix(issuer, "/")
	doc, err := json.Marshal(Discovery{
		Issuer:                           issuer,
		JWKSURI:                          issuer + KeysPath,
		AuthorizationEndpoint:            issuer + "/authorize", // required by the schema; never served
		ResponseTypesSupported:           []string{"id_token"},
		SubjectTypesSupported:            []string{"public"},
		IDTokenSigningAlgValuesSupported: []string{"ES256", "ES384", "RS256"},
	})
	if err != nil {
		return nil, fmt.Errorf("oidc: %w", err)
	}
	return &handler{prefix: strings.TrimSuffix(u.Path, "/"), doc: doc, keys: keys}, nil
}

func isLoopback(host string) bool {
	return host == "localhost" || host == "127.0.0.1" || host == "::1"
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var body []byte
	switch r.URL.Path {
	case h.prefix + DiscoveryPath:
		body = h.doc
	case h.prefix + KeysPath:
		b, err := JWKS(h.keys())
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		body = b
	default:
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(body)
}

// JWKS renders keys as a JSON Web Key Set ordered by key ID, each key with
// use "sig" and its algorithm. Keys of unsupported types are left out.
func JWKS(keys map[string]crypto.PublicKey) ([]byte, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, kid := range slices.Sorted(maps.Keys(keys)) {
		alg := algorithmOf(keys[kid])
		if alg == "" {
			continue
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: keys[kid], KeyID: kid, Use: "sig", Algorithm: alg})
	}
	b, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("oidc: JWKS: %w", err)
	}
	return b, nil
}

func algorithmOf(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return "ES256"
		case elliptic.P384():
			return "ES384"
		}
	case *rsa.PublicKey:
		return "RS256"
	}
	return ""
}
