package jwtsigner_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// keyStatuses returns "status[:tainted]" by key ID.
func keyStatuses(s *jwtsigner.Signer) map[string]string {
	out := map[string]string{}
	for _, k := range s.Keys() {
		st := k.Status
		if k.Tainted {
			st += ":tainted"
		}
		out[k.ID] = st
	}
	return out
}

func sameStatuses(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestKeyLifecycle walks one key through every operator verb: prepare
// publishes it, activate makes new tokens carry its kid while old tokens
// still validate, taint flags the old key (Changed fires), revoke removes
// it from the bundle so its tokens stop validating — and it all survives
// a restart.
func TestKeyLifecycle(t *testing.T) {
	clk := newClock()
	dir := filepath.Join(t.TempDir(), "jwt")
	s := rotating(t, dir, clk, nil)
	first := s.Keys()[0]
	if first.Status != jwtsigner.StatusActive || first.Algorithm != jwtsigner.ES256 || first.PublicKey == nil {
		t.Fatalf("fresh signer: %+v", first)
	}
	oldTok := sign(t, s, 10*time.Minute)

	clk.Add(time.Minute)
	ch := s.Changed()
	prep, err := s.PrepareKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if prep.Status != jwtsigner.StatusPrepared || !fired(ch) || s.NextKeyID() != prep.ID || s.ActiveKeyID() != first.ID {
		t.Fatalf("prepare: %+v, next %q", prep, s.NextKeyID())
	}
	if !slices.Contains(kids(s), prep.ID) {
		t.Fatal("prepared key not published")
	}

	clk.Add(time.Minute)
	ch = s.Changed()
	act, err := s.ActivateKey(t.Context(), prep.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !fired(ch) || s.ActiveKeyID() != prep.ID || !act.ActivatedAt.Equal(clk.Now()) {
		t.Fatalf("activate: %+v", act)
	}
	newTok := sign(t, s, 10*time.Minute)
	if newTok.KeyID != prep.ID {
		t.Fatalf("new token signed with %s, want %s", newTok.KeyID, prep.ID)
	}
	for _, tok := range []jwtsigner.JWTSVID{oldTok, newTok} {
		if err := validateAt(tok.Token, s, clk.Now()); err != nil {
			t.Fatalf("after activate: %v", err)
		}
	}

	ch = s.Changed()
	if _, err := s.TaintKey(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if !fired(ch) || !slices.Equal(s.TaintedKeyIDs(), []string{first.ID}) {
		t.Fatalf("taint: fired %v, tainted %v", fired(ch), s.TaintedKeyIDs())
	}
	if err := validateAt(oldTok.Token, s, clk.Now()); err != nil {
		t.Fatalf("a tainted key's token must validate until revoked: %v", err)
	}

	ch = s.Changed()
	if _, err := s.RevokeKey(t.Context(), first.ID); err != nil {
		t.Fatal(err)
	}
	if !fired(ch) || slices.Contains(kids(s), first.ID) {
		t.Fatalf("revoke: fired %v, published %v", fired(ch), kids(s))
	}
	if err := validateAt(oldTok.Token, s, clk.Now()); err == nil {
		t.Fatal("a revoked key's token still validates")
	}
	if err := validateAt(newTok.Token, s, clk.Now()); err != nil {
		t.Fatal(err)
	}

	r := rotating(t, dir, clk, nil)
	if !sameStatuses(keyStatuses(r), keyStatuses(s)) {
		t.Fatalf("after restart %v, want %v", keyStatuses(r), keyStatuses(s))
	}
	fi, err := os.Stat(filepath.Join(dir, jwtsigner.StateFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v %v", fi, err)
	}
}

// TestKeyRefusals: every action that makes no sense is refused with
// ErrUnknownKey or ErrRefused and a reason, and changes nothing.
func TestKeyRefusals(t *testing.T) {
	clk := newClock()
	s := rotating(t, filepath.Join(t.TempDir(), "jwt"), clk, nil)
	ctx := t.Context()
	if _, err := s.ActivateKey(ctx, "nope"); !errors.Is(err, jwtsigner.ErrUnknownKey) || !strings.Contains(err.Error(), "run prepare first") {
		t.Fatalf("activate without a prepared key: %v", err)
	}
	old := s.ActiveKeyID()
	p, err := s.PrepareKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.ActivateKey(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	active := p.ID
	p2, err := s.PrepareKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		do      func(context.Context, string) (jwtsigner.KeyInfo, error)
		id      string
		wantIs  error
		wantErr string
	}{
		{name: "activate unknown", do: s.ActivateKey, id: "nope", wantIs: jwtsigner.ErrUnknownKey, wantErr: "no such key"},
		{name: "activate empty ID", do: s.ActivateKey, id: "", wantIs: jwtsigner.ErrUnknownKey, wantErr: "ID is required"},
		{name: "activate the active", do: s.ActivateKey, id: active, wantIs: jwtsigner.ErrRefused, wantErr: "already the active"},
		{name: "activate an old one", do: s.ActivateKey, id: old, wantIs: jwtsigner.ErrRefused, wantErr: "only the prepared one"},
		{name: "taint unknown", do: s.TaintKey, id: "nope", wantIs: jwtsigner.ErrUnknownKey, wantErr: "no such key"},
		{name: "taint the active", do: s.TaintKey, id: active, wantIs: jwtsigner.ErrRefused, wantErr: "is the active key"},
		{name: "taint the prepared", do: s.TaintKey, id: p2.ID, wantIs: jwtsigner.ErrRefused, wantErr: "prepared and has signed nothing"},
		{name: "revoke unknown", do: s.RevokeKey, id: "nope", wantIs: jwtsigner.ErrUnknownKey, wantErr: "no such key"},
		{name: "revoke the active", do: s.RevokeKey, id: active, wantIs: jwtsigner.ErrRefused, wantErr: "is the active key"},
		{name: "revoke the prepared", do: s.RevokeKey, id: p2.ID, wantIs: jwtsigner.ErrRefused, wantErr: "prepared, not tainted"},
		{name: "revoke an untainted old one", do: s.RevokeKey, id: old, wantIs: jwtsigner.ErrRefused, wantErr: "taint it first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := keyStatuses(s)
			ch := s.Changed()
			_, err := tt.do(ctx, tt.id)
			if !errors.Is(err, tt.wantIs) || !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "jwtsigner: ") {
				t.Fatalf("err = %v, want %v containing %q", err, tt.wantIs, tt.wantErr)
			}
			if !sameStatuses(keyStatuses(s), before) || fired(ch) {
				t.Fatal("a refused action changed the signer")
			}
		})
	}
	if _, err := s.TaintKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TaintKey(ctx, old); !errors.Is(err, jwtsigner.ErrRefused) || !strings.Contains(err.Error(), "already tainted") {
		t.Fatalf("taint twice: %v", err)
	}
	if _, err := s.RevokeKey(ctx, old); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeKey(ctx, old); !errors.Is(err, jwtsigner.ErrRefused) || !strings.Contains(err.Error(), "already revoked") {
		t.Fatalf("revoke twice: %v", err)
	}
}

// TestKeyPrepareReplaces: preparing again replaces a prepared key that
// never signed; it leaves the bundle.
func TestKeyPrepareReplaces(t *testing.T) {
	s := rotating(t, filepath.Join(t.TempDir(), "jwt"), newClock(), nil)
	a, err := s.PrepareKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.PrepareKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a.ID == b.ID || slices.Contains(kids(s), a.ID) || s.NextKeyID() != b.ID || len(kids(s)) != 2 {
		t.Fatalf("second prepare: %v", keyStatuses(s))
	}
}

// TestKeyActionsShared: with two signers on one KV store, each action on
// one is what the other publishes after its next poll, and a signer that
// signed with a revoked key (even one restarting from a stale local copy)
// does not merge it back.
func TestKeyActionsShared(t *testing.T) {
	kv := newMemKV()
	clk := newClock()
	a := rotating(t, filepath.Join(t.TempDir(), "a"), clk, kv)
	bDir := filepath.Join(t.TempDir(), "b")
	b := rotating(t, bDir, clk, kv)
	first := a.ActiveKeyID()
	if b.ActiveKeyID() != first {
		t.Fatal("signers disagree at start")
	}
	sign(t, b, time.Minute) // b signed with the first key

	p, err := a.PrepareKey(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	mustRotate(t, b)
	if b.NextKeyID() != p.ID {
		t.Fatal("b did not adopt the prepared key")
	}
	if _, err := b.ActivateKey(t.Context(), p.ID); err != nil {
		t.Fatal(err)
	}
	mustRotate(t, a)
	if a.ActiveKeyID() != p.ID {
		t.Fatal("a did not adopt the activation")
	}
	if _, err := a.TaintKey(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	mustRotate(t, b)
	if keyStatuses(b)[first] != "old:tainted" {
		t.Fatalf("b did not adopt the taint: %v", keyStatuses(b))
	}
	stale, err := os.ReadFile(filepath.Join(bDir, jwtsigner.StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeKey(t.Context(), first); err != nil {
		t.Fatal(err)
	}
	mustRotate(t, b, a)
	for _, s := range []*jwtsigner.Signer{a, b} {
		if slices.Contains(kids(s), first) {
			t.Fatalf("revoked key merged back: %v", keyStatuses(s))
		}
	}
	if !slices.Equal(kids(a), kids(b)) {
		t.Fatalf("bundles differ: %v vs %v", kids(a), kids(b))
	}
	staleDir := filepath.Join(t.TempDir(), "stale")
	if err := os.Mkdir(staleDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(staleDir, jwtsigner.StateFileName), stale, 0o600); err != nil {
		t.Fatal(err)
	}
	c := rotating(t, staleDir, clk, kv)
	if slices.Contains(kids(c), first) {
		t.Fatalf("restart from a stale copy resurrected the revoked key: %v", keyStatuses(c))
	}
}

// TestKeyHeldAndRevoked: a state that lists a key as both held and revoked
// is refused.
func TestKeyHeldAndRevoked(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "jwt")
	s := rotating(t, dir, newClock(), nil)
	if _, err := s.PrepareKey(t.Context()); err != nil {
		t.Fatal(err)
	}
	good, err := os.ReadFile(filepath.Join(dir, jwtsigner.StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(good), `"keys": [`,
		`"revoked": [{"key_id": "`+s.ActiveKeyID()+`", "not_after": "2040-01-01T00:00:00Z"}], "keys": [`, 1)
	if _, err := jwtsigner.DecodeState([]byte(bad), td); err == nil || !strings.Contains(err.Error(), "both held and revoked") {
		t.Fatalf("err = %v", err)
	}
}
