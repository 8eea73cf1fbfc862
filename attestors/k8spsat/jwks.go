package k8spsat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Offline validation limits.
const (
	DefaultJWKSRefreshInterval = 5 * time.Minute
	// minJWKSRefresh rate-limits refreshes caused by unknown key IDs.
	minJWKSRefresh = 10 * time.Second
	maxJWKSSize    = 1 << 20
	// clockLeeway tolerates skew on exp, nbf and iat.
	clockLeeway = 30 * time.Second
)

// allowedAlgs are the asymmetric algorithms Kubernetes signs with; "none"
// and HMAC are never accepted.
var allowedAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// psatClaims are the claims of a Kubernetes projected token.
type psatClaims struct {
	jwt.Claims
	K8s struct {
		Namespace      string  `json:"namespace"`
		ServiceAccount objRef  `json:"serviceaccount"`
		Pod            *objRef `json:"pod"`
		Node           *objRef `json:"node"`
	} `json:"kubernetes.io"`
}

type objRef struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// jwksValidator validates tokens offline against the issuer's keys.
type jwksValidator struct {
	issuer string
	now    func() time.Time
	keys   *keySource
}

func newJWKSValidator(c *ClusterConfig, now func() time.Time, log *slog.Logger) (*jwksValidator, error) {
	ks := &keySource{refresh: DefaultJWKSRefreshInterval, now: now, log: log.With("cluster", c.Name)}
	if c.JWKSRefreshInterval != "" {
		ks.refresh, _ = time.ParseDuration(c.JWKSRefreshInterval) // validated
	}
	if c.JWKSFile != "" {
		path := c.JWKSFile
		ks.load = func(context.Context) ([]byte, error) { return readLimited(path, maxJWKSSize) }
		// A bad file stops start-up.
		if err := ks.reload(context.Background()); err != nil {
			return nil, fmt.Errorf("k8spsat: cluster %q: %w", c.Name, err)
		}
	} else {
		client, err := jwksClient(c.JWKSCAFile)
		if err != nil {
			return nil, fmt.Errorf("k8spsat: cluster %q: %w", c.Name, err)
		}
		u := c.JWKSURL
		ks.load = func(ctx context.Context) ([]byte, error) { return fetchJWKS(ctx, client, u) }
	}
	return &jwksValidator{issuer: c.Issuer, now: now, keys: ks}, nil
}

func (v *jwksValidator) validate(ctx context.Context, token string, audiences []string) (identity, error) {
	tok, err := jwt.ParseSigned(token, allowedAlgs)
	if err != nil {
		return identity{}, fmt.Errorf("parse token: %w", err)
	}
	if len(tok.Headers) != 1 {
		return identity{}, errors.New("token has more than one signature")
	}
	kid := tok.Headers[0].KeyID
	keys, err := v.keys.lookup(ctx, kid)
	if err != nil {
		return identity{}, err
	}
	var claims psatClaims
	verified := false
	for _, k := range keys {
		if k.Algorithm != "" && k.Algorithm != tok.Headers[0].Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return identity{}, fmt.Errorf("token signature does not verify with the issuer's key %q", truncate(kid))
	}
	if claims.Expiry == nil {
		return identity{}, errors.New("token has no expiry")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, AnyAudience: audiences, Time: v.now()}, clockLeeway)
	if err != nil {
		return identity{}, fmt.Errorf("token claims: %w", err)
	}
	k := claims.K8s
	id := identity{Namespace: k.Namespace, ServiceAccount: k.ServiceAccount.Name}
	if claims.Subject != "system:serviceaccount:"+id.Namespace+":"+id.ServiceAccount {
		return identity{}, fmt.Errorf("token subject %q does not match its service account", truncate(claims.Subject))
	}
	if k.Pod != nil {
		id.PodName, id.PodUID = k.Pod.Name, k.Pod.UID
	}
	if k.Node != nil {
		id.NodeName, id.NodeUID = k.Node.Name, k.Node.UID
	}
	return id, nil
}

// keySource caches a JWKS.
type keySource struct {
	load    func(context.Context) ([]byte, error)
	refresh time.Duration
	now     func() time.Time
	log     *slog.Logger

	// mu guards the fields that follow; it is held while loading, so
	// there is at most one load at a time.
	mu      sync.Mutex
	set     *jose.JSONWebKeySet
	fetched time.Time // last successful load
	tried   time.Time // last attempt
}

// lookup returns the public keys with ID kid (every key if kid is empty),
// refreshing a stale set, or one that lacks kid (at most every
// minJWKSRefresh).
func (s *keySource) lookup(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	mayLoad := s.tried.IsZero() || now.Sub(s.tried) >= minJWKSRefresh
	if (s.set == nil || now.Sub(s.fetched) > s.refresh) && mayLoad {
		// On failure keep using the keys we have, if any.
		_ = s.reloadLocked(ctx, now)
		mayLoad = false
	}
	if s.set == nil {
		return nil, errors.New("issuer keys unavailable")
	}
	keys := s.find(kid)
	if len(keys) == 0 && mayLoad {
		if err := s.reloadLocked(ctx, now); err != nil {
			return nil, err
		}
		keys = s.find(kid)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no issuer key with ID %q", truncate(kid))
	}
	return keys, nil
}

func (s *keySource) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked(ctx, s.now())
}

func (s *keySource) reloadLocked(ctx context.Context, now time.Time) error {
	s.tried = now
	b, err := s.load(ctx)
	if err != nil {
		s.log.Warn("k8spsat: loading issuer keys", "err", err)
		return fmt.Errorf("issuer keys: %w", err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("issuer keys: %w", err)
	}
	// Keep public keys only: a symmetric key would let anyone who can
	// read the JWKS mint tokens.
	pub := set.Keys[:0]
	for _, k := range set.Keys {
		if k.Valid() && k.IsPublic() && (k.Use == "" || k.Use == "sig") {
			pub = append(pub, k)
		}
	}
	if len(pub) == 0 {
		return errors.New("issuer keys: no public signing key")
	}
	set.Keys = pub
	s.set, s.fetched = &set, now
	return nil
}

func (s *keySource) find(kid string) []jose.JSONWebKey {
	if s.set == nil {
		return nil
	}
	if kid == "" {
		return s.set.Keys
	}
	return s.set.Key(kid)
}

func jwksClient(caFile string) (*http.Client, error) {
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("jwks CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("jwks CA %s: no PEM certificates", caFile)
		}
		tlsConf.RootCAs = pool
	}
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsConf},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errors.New("redirects are not followed")
		},
	}, nil
}

func fetchJWKS(ctx context.Context, client *http.Client, url string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return readAllLimited(resp.Body, maxJWKSSize)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimited(f, limit)
}

func readAllLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes", limit)
	}
	return b, nil
}
