package workloadapi_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/proto/spiffe/workload"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/agent/cache"
	"github.com/hallmarkid/hallmark/agent/peercred"
	hwapi "github.com/hallmarkid/hallmark/agent/workloadapi"
	"github.com/hallmarkid/hallmark/agent/workloadattest"
	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors/unix"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// signerMinter stands in for the server: it signs with a real jwtsigner
// for the entries it knows, and counts calls.
type signerMinter struct {
	signer  *jwtsigner.Signer
	mu      sync.Mutex
	entries map[string]registration.Entry
	calls   atomic.Int32
	delay   time.Duration
}

func (m *signerMinter) NewJWTSVID(ctx context.Context, entryID string, audience []string) (*apiv1.JWTSVID, error) {
	m.calls.Add(1)
	time.Sleep(m.delay)
	m.mu.Lock()
	e, ok := m.entries[entryID]
	m.mu.Unlock()
	if !ok {
		return nil, status.Error(codes.PermissionDenied, "entry not found or not authorised for this agent")
	}
	s, err := m.signer.SignJWTSVID(ctx, jwtsigner.JWTSVIDParams{ID: e.SPIFFEID, Audience: audience, TTL: e.JWTSVIDTTL})
	if err != nil {
		return nil, err
	}
	return &apiv1.JWTSVID{Token: s.Token, SpiffeId: e.SPIFFEID.String(), ExpiresAt: s.ExpiresAt.Unix(), IssuedAt: s.IssuedAt.Unix()}, nil
}

type jwtFixture struct {
	cache  *cache.Cache
	store  *cache.JWTStore
	minter *signerMinter
	addr   string
	sock   string
}

func newJWTFixture(tb testing.TB) *jwtFixture {
	tb.Helper()
	signer, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(tb.TempDir(), "jwt")})
	if err != nil {
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "wl")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		tb.Fatal(err)
	}
	f := &jwtFixture{cache: cache.New(), store: cache.NewJWTStore(), minter: &signerMinter{signer: signer, entries: map[string]registration.Entry{}},
		addr: "unix://" + sock, sock: sock}
	f.store.SetBundle(jwtbundle.FromJWTAuthorities(td, signer.JWTAuthorities()))
	srv := grpc.NewServer(grpc.Creds(peercred.TransportCredentials()))
	h, err := hwapi.New(hwapi.Config{Cache: f.cache, Attestor: workloadattest.New(nil, unix.New(unix.Config{}))}).
		WithJWT(hwapi.JWTConfig{Store: f.store, Minter: f.minter})
	if err != nil {
		tb.Fatal(err)
	}
	h.Register(srv)
	go srv.Serve(l)
	tb.Cleanup(srv.Stop)
	return f
}

func (f *jwtFixture) add(name string, rev int64, sels ...registration.Selector) registration.Entry {
	e := registration.Entry{ID: name, Revision: rev, SPIFFEID: spiffeid.RequireFromString("spiffe://example.org/" + name),
		ParentID: spiffeid.RequireFromString("spiffe://example.org/agent/x"), Selectors: sels, Hint: "hint-" + name}
	f.cache.UpdateEntries(false, []registration.Entry{e}, nil)
	f.minter.mu.Lock()
	f.minter.entries[name] = e
	f.minter.mu.Unlock()
	return e
}

func ctx10(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestFetchJWTSVIDWithStockClient(t *testing.T) {
	f := newJWTFixture(t)
	f.add("w", 1, me())
	f.add("w2", 1, me())
	f.add("other", 1, registration.Selector{Type: "unix", Value: "uid:4242"})
	ctx := ctx10(t)
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	svids, err := client.FetchJWTSVIDs(ctx, jwtsvid.Params{Audience: "aud1", ExtraAudiences: []string{"aud2"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(svids) != 2 || svids[0].ID.String() != "spiffe://example.org/w" || svids[1].ID.String() != "spiffe://example.org/w2" {
		t.Fatalf("got %v, want w and w2 only", svids)
	}
	if svids[0].Hint != "hint-w" {
		t.Errorf("hint = %q", svids[0].Hint)
	}
	bundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range svids {
		if _, err := jwtsvid.ParseAndValidate(s.Marshal(), bundles, []string{"aud2"}); err != nil {
			t.Fatalf("fetched token does not validate with the fetched bundle: %v", err)
		}
	}
	// One SPIFFE ID on request; a second fetch is served from the cache,
	// whatever the audience order.
	calls := f.minter.calls.Load()
	one, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "aud2", ExtraAudiences: []string{"aud1"}, Subject: spiffeid.RequireFromString("spiffe://example.org/w2")})
	if err != nil {
		t.Fatal(err)
	}
	if one.ID != svids[1].ID || one.Marshal() != svids[1].Marshal() || f.minter.calls.Load() != calls {
		t.Fatalf("second fetch minted again (calls %d → %d) or returned another token", calls, f.minter.calls.Load())
	}
	// Validation through the agent returns the claims.
	got, err := client.ValidateJWTSVID(ctx, one.Marshal(), "aud1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != one.ID || got.Claims["sub"] != one.ID.String() {
		t.Fatalf("validated %v claims %v", got.ID, got.Claims)
	}
}

func TestFetchJWTSVIDRefusals(t *testing.T) {
	f := newJWTFixture(t)
	f.add("w", 1, me())
	f.add("other", 1, registration.Selector{Type: "unix", Value: "uid:4242"})
	conn, err := grpc.NewClient("unix://"+f.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	raw := workload.NewSpiffeWorkloadAPIClient(conn)
	hdr := metadata.AppendToOutgoingContext(ctx10(t), "workload.spiffe.io", "true")
	for _, tt := range []struct {
		name     string
		ctx      context.Context
		req      *workload.JWTSVIDRequest
		wantCode codes.Code
	}{
		{name: "no security header", ctx: ctx10(t), req: &workload.JWTSVIDRequest{Audience: []string{"a"}}, wantCode: codes.InvalidArgument},
		{name: "no audience", ctx: hdr, req: &workload.JWTSVIDRequest{}, wantCode: codes.InvalidArgument},
		{name: "empty audience value", ctx: hdr, req: &workload.JWTSVIDRequest{Audience: []string{""}}, wantCode: codes.InvalidArgument},
		{name: "too many audiences", ctx: hdr, req: &workload.JWTSVIDRequest{Audience: make([]string, hwapi.MaxAudiences+1)}, wantCode: codes.InvalidArgument},
		{name: "malformed spiffe_id", ctx: hdr, req: &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "spiffe://Example.org/w"}, wantCode: codes.InvalidArgument},
		{name: "another workload's ID", ctx: hdr, req: &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "spiffe://example.org/other"}, wantCode: codes.PermissionDenied},
		{name: "unknown ID", ctx: hdr, req: &workload.JWTSVIDRequest{Audience: []string{"a"}, SpiffeId: "spiffe://example.org/nope"}, wantCode: codes.PermissionDenied},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := raw.FetchJWTSVID(tt.ctx, tt.req)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("err = %v, want %s", err, tt.wantCode)
			}
		})
	}
	// The server refusing (entry no longer authorised) is PermissionDenied.
	f.minter.mu.Lock()
	delete(f.minter.entries, "w")
	f.minter.mu.Unlock()
	if _, err := raw.FetchJWTSVID(hdr, &workload.JWTSVIDRequest{Audience: []string{"a"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("server refusal: err = %v, want PermissionDenied", err)
	}
	// A caller with no entries at all.
	f.cache.UpdateEntries(true, nil, nil)
	if _, err := raw.FetchJWTSVID(hdr, &workload.JWTSVIDRequest{Audience: []string{"a"}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("no entries: err = %v, want PermissionDenied", err)
	}
	if _, err := raw.ValidateJWTSVID(ctx10(t), &workload.ValidateJWTSVIDRequest{Audience: "a", Svid: "x"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("validate without header: err = %v, want InvalidArgument", err)
	}
	for _, req := range []*workload.ValidateJWTSVIDRequest{{Svid: "x"}, {Audience: "a"}, {Audience: "a", Svid: "not.a.token"}} {
		if _, err := raw.ValidateJWTSVID(hdr, req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("validate %v: err = %v, want InvalidArgument", req, err)
		}
	}
}

func TestJWTTokensCachedUntilHalfLifeAndMintedOnce(t *testing.T) {
	f := newJWTFixture(t)
	e := f.add("w", 1, me())
	f.minter.delay = 50 * time.Millisecond
	ctx := ctx10(t)
	var wg sync.WaitGroup
	tokens := make([]string, 20)
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}, workloadapi.WithAddr(f.addr))
			if err != nil {
				t.Error(err)
				return
			}
			tokens[i] = s.Marshal()
		}()
	}
	wg.Wait()
	if n := f.minter.calls.Load(); n != 1 {
		t.Fatalf("%d concurrent fetches made %d server calls, want 1", len(tokens), n)
	}
	for _, tok := range tokens {
		if tok != tokens[0] {
			t.Fatal("concurrent fetches got different tokens")
		}
	}
	// Another audience set is another token.
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "b"}, workloadapi.WithAddr(f.addr)); err != nil {
		t.Fatal(err)
	}
	if n := f.minter.calls.Load(); n != 2 {
		t.Fatalf("server calls = %d, want 2", n)
	}
	// An entry change (new revision) is a new token.
	e.Revision = 2
	f.cache.UpdateEntries(false, []registration.Entry{e}, nil)
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "a"}, workloadapi.WithAddr(f.addr)); err != nil {
		t.Fatal(err)
	}
	if n := f.minter.calls.Load(); n != 3 {
		t.Fatalf("server calls = %d, want 3", n)
	}
}

func TestJWTStoreHalfLife(t *testing.T) {
	s := cache.NewJWTStore()
	e := registration.Entry{ID: "e", Revision: 1}
	t0 := time.Unix(1000, 0)
	s.PutToken(e, []string{"b", "a", "a"}, &cache.JWTSVID{Token: "t", IssuedAt: t0, ExpiresAt: t0.Add(100 * time.Second)}, t0)
	for _, tt := range []struct {
		name string
		aud  []string
		at   time.Time
		want bool
	}{
		{name: "fresh, same set other order", aud: []string{"a", "b"}, at: t0.Add(49 * time.Second), want: true},
		{name: "at half-life", aud: []string{"a", "b"}, at: t0.Add(50 * time.Second), want: false},
		{name: "subset", aud: []string{"a"}, at: t0, want: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Token(e, tt.aud, tt.at) != nil; got != tt.want {
				t.Fatalf("cached = %v, want %v", got, tt.want)
			}
		})
	}
	for i := range cache.MaxJWTSVIDs + 10 {
		s.PutToken(registration.Entry{ID: string(rune(i))}, []string{"a"}, &cache.JWTSVID{IssuedAt: t0, ExpiresAt: t0.Add(time.Hour)}, t0)
	}
	if n := s.Tokens(); n > cache.MaxJWTSVIDs {
		t.Fatalf("%d tokens cached, bound is %d", n, cache.MaxJWTSVIDs)
	}
}

func TestJWTBundlePushedOnChange(t *testing.T) {
	f := newJWTFixture(t)
	f.add("w", 1, me())
	ctx := ctx10(t)
	got := make(chan *jwtbundle.Set, 8)
	go workloadapi.WatchJWTBundles(ctx, bundleWatcher(func(s *jwtbundle.Set) { got <- s }), workloadapi.WithAddr(f.addr))
	first := <-got
	b, err := first.GetJWTBundleForTrustDomain(td)
	if err != nil || len(b.JWTAuthorities()) != 1 {
		t.Fatalf("first bundle: %v %v", b, err)
	}
	// Same keys again: nothing is pushed.
	f.store.SetBundle(b.Clone())
	f.add("w", 2, me()) // an entry change wakes the stream too
	select {
	case <-got:
		t.Fatal("pushed an unchanged bundle")
	case <-time.After(200 * time.Millisecond):
	}
	// A new key is pushed.
	nb := b.Clone()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err := nb.AddJWTAuthority("next", k.Public()); err != nil {
		t.Fatal(err)
	}
	f.store.SetBundle(nb)
	select {
	case s := <-got:
		b2, _ := s.GetJWTBundleForTrustDomain(td)
		if b2 == nil || !b2.HasJWTAuthority("next") {
			t.Fatal("new key not in the pushed bundle")
		}
	case <-ctx.Done():
		t.Fatal("bundle change not pushed")
	}
}

type bundleWatcher func(*jwtbundle.Set)

func (w bundleWatcher) OnJWTBundlesUpdate(s *jwtbundle.Set) { w(s) }
func (w bundleWatcher) OnJWTBundlesWatchError(error)        {}

// tokenKit builds hostile tokens for the validation table.
type tokenKit struct {
	key    *ecdsa.PrivateKey
	kid    string
	bundle *jwtbundle.Bundle
}

func newTokenKit(t testing.TB) *tokenKit {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := &tokenKit{key: key, kid: "kid-1", bundle: jwtbundle.New(td)}
	if err := k.bundle.AddJWTAuthority(k.kid, key.Public()); err != nil {
		t.Fatal(err)
	}
	return k
}

func validClaims() map[string]any {
	now := time.Now()
	return map[string]any{"sub": "spiffe://example.org/w", "aud": []string{"svc"}, "exp": now.Add(5 * time.Minute).Unix(), "iat": now.Unix()}
}

func with(mod func(map[string]any)) map[string]any {
	c := validClaims()
	mod(c)
	return c
}

func (k *tokenKit) sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	var sk any = key
	if kid != "" {
		sk = jose.JSONWebKey{Key: key, KeyID: kid}
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: sk}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func unsigned(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// TestValidateTokenRejects is the THREATS.md list: a JWT-SVID without exp,
// with alg none or HS*, with an unknown kid or a wrong aud is invalid; and
// the neighbouring cases.
func TestValidateTokenRejects(t *testing.T) {
	k := newTokenKit(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	pubDER, _ := x509.MarshalPKIXPublicKey(k.key.Public())
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	k384 := newTokenKit(t)
	_ = k384.bundle.AddJWTAuthority("p384", p384.Public())
	good := k.sign(t, jose.ES256, k.key, k.kid, "JWT", validClaims())
	headerOf := func(tok string) string { return strings.Split(tok, ".")[0] }
	payloadOf := func(tok string) string { return strings.Split(tok, ".")[1] }

	for _, tt := range []struct {
		name     string
		token    string
		bundle   *jwtbundle.Bundle
		audience string
		wantErr  string
	}{
		{name: "valid", token: good, wantErr: ""},
		{name: "valid without typ", token: k.sign(t, jose.ES256, k.key, k.kid, "", validClaims()), wantErr: ""},
		{name: "no exp", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { delete(c, "exp") })), wantErr: "missing exp"},
		{name: "expired", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })), wantErr: "expired"},
		{name: "alg none", token: unsigned(map[string]any{"alg": "none", "kid": k.kid, "typ": "JWT"}, validClaims()), wantErr: "unable to parse"},
		{name: "alg none with a signature", token: unsigned(map[string]any{"alg": "none", "kid": k.kid}, validClaims()) + "c2ln", wantErr: "unable to parse"},
		{name: "HS256 keyed with the public key", token: k.sign(t, jose.HS256, pubDER, k.kid, "JWT", validClaims()), wantErr: "unable to parse"},
		{name: "HS512", token: k.sign(t, jose.HS512, []byte(strings.Repeat("k", 64)), k.kid, "JWT", validClaims()), wantErr: "unable to parse"},
		{name: "unknown kid", token: k.sign(t, jose.ES256, k.key, "other-kid", "JWT", validClaims()), wantErr: "no JWT authority"},
		{name: "no kid", token: k.sign(t, jose.ES256, k.key, "", "JWT", validClaims()), wantErr: "missing key id"},
		{name: "known kid, other key", token: k.sign(t, jose.ES256, other, k.kid, "JWT", validClaims()), wantErr: "unable to get claims"},
		{name: "RS256 under an EC kid", token: k.sign(t, jose.RS256, rsaKey, k.kid, "JWT", validClaims()), wantErr: "unable to get claims"},
		{name: "ES384 header on a P-256 key", token: k384.sign(t, jose.ES384, p384, k.kid, "JWT", validClaims()), bundle: k384.bundle, wantErr: "unable to get claims"},
		{name: "wrong aud", token: good, audience: "other-svc", wantErr: "expected audience"},
		{name: "no aud", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { delete(c, "aud") })), wantErr: "expected audience"},
		{name: "no sub", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { delete(c, "sub") })), wantErr: "missing subject"},
		{name: "sub not a SPIFFE ID", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["sub"] = "https://example.org/w" })), wantErr: "invalid subject"},
		{name: "sub in another trust domain", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["sub"] = "spiffe://evil.org/w" })), wantErr: "no bundle found"},
		{name: "not yet valid", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() })), wantErr: "not valid yet"},
		{name: "issued in the future", token: k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["iat"] = time.Now().Add(10 * time.Minute).Unix() })), wantErr: "issued in the future"},
		{name: "typ not JWT", token: k.sign(t, jose.ES256, k.key, k.kid, "at+jwt", validClaims()), wantErr: "header type"},
		{name: "payload swapped", token: headerOf(good) + "." + payloadOf(k.sign(t, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["sub"] = "spiffe://example.org/admin" }))) + "." + strings.Split(good, ".")[2], wantErr: "unable to get claims"},
		{name: "signature stripped", token: headerOf(good) + "." + payloadOf(good) + ".", wantErr: ""},
		{name: "garbage", token: "not a token", wantErr: "unable to parse"},
		{name: "oversized", token: strings.Repeat("a", hwapi.MaxTokenSize+1), wantErr: "at most"},
		{name: "empty audience", token: good, audience: "-", wantErr: "audience must be specified"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := k.bundle
			if tt.bundle != nil {
				b = tt.bundle
			}
			aud := "svc"
			switch tt.audience {
			case "":
			case "-":
				aud = ""
			default:
				aud = tt.audience
			}
			svid, err := hwapi.ValidateToken(tt.token, b, aud)
			wantErr := tt.wantErr
			if tt.name == "signature stripped" {
				wantErr = "unable to get claims" // go-jose: an empty signature never verifies
			}
			if wantErr == "" {
				if err != nil {
					t.Fatalf("valid token refused: %v", err)
				}
				if svid.ID.String() != "spiffe://example.org/w" {
					t.Fatalf("ID %s", svid.ID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("err = %v, want %q", err, wantErr)
			}
		})
	}
}

func FuzzValidateToken(f *testing.F) {
	k := newTokenKit(f)
	f.Add(k.sign(f, jose.ES256, k.key, k.kid, "JWT", validClaims()), "svc")
	f.Add(unsigned(map[string]any{"alg": "none", "kid": k.kid}, validClaims()), "svc")
	f.Add(k.sign(f, jose.HS256, []byte("secretsecretsecretsecretsecret00"), k.kid, "JWT", validClaims()), "svc")
	f.Add(k.sign(f, jose.ES256, k.key, k.kid, "JWT", with(func(c map[string]any) { c["aud"] = "svc"; c["x"] = map[string]any{"n": []any{1, "a", nil}} })), "svc")
	f.Add("eyJhbGciOiJFUzI1NiJ9..", "")
	f.Add(`{"payload":"e30","signatures":[]}`, "svc")
	f.Fuzz(func(t *testing.T, token, audience string) {
		svid, err := hwapi.ValidateToken(token, k.bundle, audience)
		if err != nil {
			return
		}
		// Anything accepted was signed by k (the fuzzer cannot forge
		// ECDSA), so it must be well-formed.
		if svid.ID.TrustDomain() != td || svid.Expiry.IsZero() || !containsAud(svid.Audience, audience) {
			t.Fatalf("accepted a malformed token: %+v", svid)
		}
	})
}

func containsAud(auds []string, a string) bool {
	for _, x := range auds {
		if x == a {
			return true
		}
	}
	return false
}

// BenchmarkFetchJWTSVIDCached is a stock client's FetchJWTSVID served from
// the agent's token cache (attestation included, no server call).
func BenchmarkFetchJWTSVIDCached(b *testing.B) {
	f := newJWTFixture(b)
	f.add("w", 1, me())
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	for b.Loop() {
		if _, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "svc"}); err != nil {
			b.Fatal(err)
		}
	}
	if n := f.minter.calls.Load(); n != 1 {
		b.Fatalf("%d server calls, want 1", n)
	}
}

// BenchmarkValidateJWTSVID is a stock client's ValidateJWTSVID round trip.
func BenchmarkValidateJWTSVID(b *testing.B) {
	f := newJWTFixture(b)
	f.add("w", 1, me())
	ctx := context.Background()
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(f.addr))
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	s, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: "svc"})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := client.ValidateJWTSVID(ctx, s.Marshal(), "svc"); err != nil {
			b.Fatal(err)
		}
	}
}
