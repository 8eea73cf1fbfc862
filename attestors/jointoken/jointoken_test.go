package jointoken_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/jointoken"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/datastore/sqlite"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "ds.sqlite3"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addToken(t testing.TB, s *sqlite.Store, token string, exp time.Time) {
	t.Helper()
	if err := s.CreateJoinToken(context.Background(), datastore.JoinToken{Token: token, ExpiresAt: exp}); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	store := openStore(t)
	v := jointoken.NewVerifier(store, func() time.Time { return now })
	good, _ := jointoken.Generate()
	addToken(t, store, good, now.Add(time.Hour))
	addToken(t, store, "expired", now.Add(-time.Second))
	addToken(t, store, "renewal", now.Add(time.Hour))

	res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: []byte(good), TrustDomain: td})
	if err != nil {
		t.Fatal(err)
	}
	if want := "spiffe://example.org/agent/join_token/" + good; res.AgentID.String() != want {
		t.Errorf("agent ID %s, want %s", res.AgentID, want)
	}
	if len(res.Selectors) != 1 || res.Selectors[0].Type != "join_token" || res.Selectors[0].Value != good {
		t.Errorf("selectors %v", res.Selectors)
	}

	tests := []struct {
		name    string
		payload string
		renewal bool
		wantErr string
	}{
		{name: "used twice", payload: good, wantErr: "invalid or expired"},
		{name: "unknown", payload: "0123456789abcdef", wantErr: "invalid or expired"},
		{name: "expired", payload: "expired", wantErr: "invalid or expired"},
		{name: "empty", payload: "", wantErr: "invalid or expired"},
		{name: "path traversal", payload: "../../server", wantErr: "invalid or expired"},
		{name: "slash", payload: "a/b", wantErr: "invalid or expired"},
		{name: "non-ASCII", payload: "tökén", wantErr: "invalid or expired"},
		{name: "NUL", payload: "abc\x00def", wantErr: "invalid or expired"},
		{name: "too long", payload: strings.Repeat("a", jointoken.MaxTokenLen+1), wantErr: "invalid or expired"},
		{name: "renewal", payload: "renewal", renewal: true, wantErr: "cannot re-attest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: []byte(tt.payload), TrustDomain: td, Renewal: tt.renewal})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Verify(%q) = %v, want %q", tt.payload, err, tt.wantErr)
			}
			if tt.wantErr == "invalid or expired" && !errors.Is(err, jointoken.ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken: unknown, used and expired must be indistinguishable", err)
			}
		})
	}
	// A refused renewal did not consume the token.
	if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: []byte("renewal"), TrustDomain: td}); err != nil {
		t.Fatalf("token consumed by a refused renewal: %v", err)
	}
}

func TestVerifyConcurrentSingleUse(t *testing.T) {
	store := openStore(t)
	v := jointoken.NewVerifier(store, nil)
	tok, _ := jointoken.Generate()
	addToken(t, store, tok, time.Now().Add(time.Hour))
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: []byte(tok), TrustDomain: td}); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, jointoken.ErrInvalidToken) {
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d of 50 concurrent uses succeeded, want exactly 1", wins.Load())
	}
}

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		tok, err := jointoken.Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) != 32 || seen[tok] {
			t.Fatalf("token %q: want 32 hex characters, never repeated", tok)
		}
		seen[tok] = true
		if _, err := jointoken.AgentID(td, tok); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCollector(t *testing.T) {
	ctx := context.Background()
	if p, err := jointoken.NewCollector("tok").Payload(ctx, attestors.CollectRequest{}); err != nil || string(p) != "tok" {
		t.Fatalf("Payload = %q, %v", p, err)
	}
	if _, err := jointoken.NewCollector("").Payload(ctx, attestors.CollectRequest{}); err == nil {
		t.Fatal("an empty token was presented")
	}
	if _, err := jointoken.NewCollector("tok").Answer(ctx, []byte("challenge")); err == nil {
		t.Fatal("a challenge was answered")
	}
}

// FuzzVerify: any payload gives a result with a well-formed agent ID or an
// error, never a panic; a payload that is not a stored token never passes.
func FuzzVerify(f *testing.F) {
	for _, s := range []string{"", "abc", "0123456789abcdef0123456789abcdef", "../x", "a/b", "tök", "\x00", strings.Repeat("z", 300)} {
		f.Add([]byte(s))
	}
	store := openStore(f)
	addToken(f, store, "stored-token", time.Now().Add(24*time.Hour))
	v := jointoken.NewVerifier(store, nil)
	f.Fuzz(func(t *testing.T, payload []byte) {
		res, err := v.Verify(context.Background(), attestors.VerifyRequest{Payload: payload, TrustDomain: td})
		if err != nil {
			return
		}
		if string(payload) != "stored-token" {
			t.Fatalf("payload %q accepted", payload)
		}
		if _, perr := spiffeid.FromString(res.AgentID.String()); perr != nil {
			t.Fatalf("malformed agent ID %q", res.AgentID)
		}
		addToken(t, store, "stored-token", time.Now().Add(24*time.Hour)) // consumed: put it back
	})
}
