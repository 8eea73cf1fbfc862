package jwtsigner_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// validState returns a state document holding an active and a next key.
func validState(tb testing.TB) []byte {
	tb.Helper()
	clk := newClock()
	dir := filepath.Join(tb.TempDir(), "jwt")
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir, KeyTTL: time.Hour, Clock: clk.Now})
	if err != nil {
		tb.Fatal(err)
	}
	clk.Add(30 * time.Minute)
	if err := s.Rotate(context.Background()); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, jwtsigner.StateFileName))
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

var stateMutations = []struct {
	name    string
	mutate  func(string) string
	wantErr string
}{
	{name: "not JSON", mutate: func(s string) string { return s[:len(s)/2] }, wantErr: "malformed state"},
	{name: "future format", mutate: func(s string) string { return strings.Replace(s, `"format": 1`, `"format": 2`, 1) }, wantErr: "format 2"},
	{name: "other trust domain", mutate: func(s string) string { return strings.Replace(s, `"example.org"`, `"other.org"`, 1) }, wantErr: "other.org"},
	{name: "two active", mutate: func(s string) string { return strings.Replace(s, `"next"`, `"active"`, 1) }, wantErr: "2 active keys"},
	{name: "no active", mutate: func(s string) string { return strings.Replace(s, `"active"`, `"old"`, 1) }, wantErr: "0 active keys"},
	{name: "unknown status", mutate: func(s string) string { return strings.Replace(s, `"next"`, `"spare"`, 1) }, wantErr: `unknown status "spare"`},
	{name: "bad key", mutate: func(s string) string { return strings.Replace(s, "PRIVATE KEY-----\\n", "PRIVATE KEY-----\\nAAAA", 1) }, wantErr: "key 0"},
	{name: "expiry before creation", mutate: func(s string) string {
		return strings.Replace(s, `"not_after": "`, `"not_after": "1999-01-01T00:00:00Z", "x": "`, 1)
	}, wantErr: "not after created_at"},
	{name: "duplicate key", mutate: func(s string) string {
		i := strings.Index(s, `"keys": [`) + len(`"keys": [`)
		j := strings.Index(s[i:], "},") + i + 2
		return s[:j] + strings.Replace(s[i:j], `"active"`, `"old"`, 1) + s[j:]
	}, wantErr: "appears twice"},
	{name: "tainted active", mutate: func(s string) string {
		return strings.Replace(s, `"status": "active",`, `"status": "active", "tainted": true,`, 1)
	}, wantErr: "only old keys"},
	{name: "malformed revoked key ID", mutate: func(s string) string {
		return strings.Replace(s, `"keys": [`, `"revoked": [{"key_id": "a/b", "not_after": "2040-01-01T00:00:00Z"}], "keys": [`, 1)
	}, wantErr: "malformed key ID"},
	{name: "revoked twice", mutate: func(s string) string {
		r := `{"key_id": "abc", "not_after": "2040-01-01T00:00:00Z"}`
		return strings.Replace(s, `"keys": [`, `"revoked": [`+r+`,`+r+`], "keys": [`, 1)
	}, wantErr: "appears twice"},
	{name: "huge", mutate: func(s string) string { return s + strings.Repeat(" ", jwtsigner.MaxStateSize) }, wantErr: "larger than"},
}

// A corrupt, foreign or loosely protected state file stops the signer; it
// is never overwritten.
func TestNewRefusesBadStateFile(t *testing.T) {
	valid := validState(t)
	for _, tt := range stateMutations {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "jwt")
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			bad := []byte(tt.mutate(string(valid)))
			path := filepath.Join(dir, jwtsigner.StateFileName)
			if err := os.WriteFile(path, bad, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if got, _ := os.ReadFile(path); string(got) != string(bad) {
				t.Fatal("state file modified")
			}
		})
	}
	t.Run("readable by others", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "jwt")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, jwtsigner.StateFileName), valid, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "want 0600") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("shared state corrupt", func(t *testing.T) {
		kv := newMemKV()
		kv.Set(jwtsigner.SharedStateKey, []byte(`{"format":1}`))
		_, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), Shared: kv, SharedNotFound: errKVNotFound})
		if err == nil || !strings.Contains(err.Error(), "shared state") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestConfigRefused(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     jwtsigner.Config
		wantErr string
	}{
		{name: "no trust domain", cfg: jwtsigner.Config{Dir: "x"}, wantErr: "TrustDomain is required"},
		{name: "negative key TTL", cfg: jwtsigner.Config{TrustDomain: td, KeyTTL: -time.Second}, wantErr: "negative KeyTTL"},
		{name: "default TTL too long", cfg: jwtsigner.Config{TrustDomain: td, DefaultTTL: 25 * time.Hour}, wantErr: "DefaultTTL"},
		{name: "shared without not-found error", cfg: jwtsigner.Config{TrustDomain: td, Shared: newMemKV()}, wantErr: "SharedNotFound"},
		{name: "no dir", cfg: jwtsigner.Config{TrustDomain: td}, wantErr: "Dir is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := jwtsigner.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestDefaultTTLConfigured(t *testing.T) {
	clk := newClock()
	s, err := jwtsigner.New(jwtsigner.Config{TrustDomain: td, Dir: filepath.Join(t.TempDir(), "jwt"), DefaultTTL: 90 * time.Second, Clock: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.SignJWTSVID(context.Background(), jwtsigner.JWTSVIDParams{ID: spiffeid.RequireFromString("spiffe://example.org/w"), Audience: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	if d := tok.ExpiresAt.Sub(tok.IssuedAt); d != 90*time.Second {
		t.Fatalf("lifetime %s, want the configured 90s", d)
	}
}
