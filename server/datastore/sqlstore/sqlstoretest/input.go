package sqlstoretest

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// RejectedInput: what the store cannot keep exactly is refused with an
// error naming the reason and the backend, and a batch holding it leaves
// nothing behind; lookups of keys that cannot be stored find nothing.
func RejectedInput(t *testing.T, h *Harness) {
	s := h.open(t, h.NewDB(t))
	ctx := t.Context()
	mod := func(f func(e *registration.Entry)) registration.Entry {
		e := Entry("/x")
		f(&e)
		return e
	}
	type entryTest struct {
		name    string
		e       registration.Entry
		wantErr string
	}
	entryTests := []entryTest{
		{"invalid UTF-8 selector", mod(func(e *registration.Entry) { e.Selectors[0].Value = "uid:\xff" }), "UTF-8"},
		{"invalid UTF-8 hint", mod(func(e *registration.Entry) { e.Hint = "a\xc3" }), "UTF-8"},
		{"invalid UTF-8 DNS name", mod(func(e *registration.Entry) { e.DNSNames = []string{"\xfe.example"} }), "UTF-8"},
		{"control character in selector", mod(func(e *registration.Entry) { e.Selectors[0].Value = "a\nunix:b" }), "control character"},
		{"ID with a space", mod(func(e *registration.Entry) { e.ID = "a b" }), "entry ID"},
		{"long ID", mod(func(e *registration.Entry) { e.ID = strings.Repeat("a", 256) }), "entry ID"},
		{"negative TTL", mod(func(e *registration.Entry) { e.JWTSVIDTTL = -1 }), "negative TTL"},
		{"empty federated trust domain", mod(func(e *registration.Entry) { e.FederatesWith = []spiffeid.TrustDomain{{}} }), "trust domain"},
	}
	if h.NoNUL {
		entryTests = append(entryTests,
			entryTest{"NUL in hint", mod(func(e *registration.Entry) { e.Hint = "a\x00b" }), "NUL"},
			entryTest{"NUL in DNS name", mod(func(e *registration.Entry) { e.DNSNames = []string{"a\x00.example"} }), "NUL"})
	}
	for _, tt := range entryTests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.CreateEntries(ctx, []registration.Entry{Entry("/ok"), tt.e})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), h.Name+": ") {
				t.Errorf("err %q lacks the package prefix", err)
			}
		})
	}
	if list, _, err := s.ListEntries(ctx); err != nil || len(list) != 0 {
		t.Errorf("rejected batches left %d entries (err %v)", len(list), err)
	}

	type otherTest struct {
		name    string
		call    func() error
		wantErr string
	}
	otherTests := []otherTest{
		{"agent without ID", func() error { return s.CreateAgent(ctx, datastore.Agent{}) }, "agent ID is empty"},
		{"agent expiry out of range", func() error {
			return s.CreateAgent(ctx, datastore.Agent{ID: "a", ExpiresAt: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)})
		}, "out of range"},
		{"empty join token", func() error {
			return s.CreateJoinToken(ctx, datastore.JoinToken{ExpiresAt: time.Now()})
		}, "token is empty"},
		{"join token without expiry", func() error { return s.CreateJoinToken(ctx, datastore.JoinToken{Token: "t"}) }, "expiry is required"},
		{"KV key not UTF-8", func() error { return s.PutKV(ctx, "\xff", nil) }, "UTF-8"},
	}
	if h.NoNUL {
		otherTests = append(otherTests,
			otherTest{"NUL in agent serial", func() error {
				return s.CreateAgent(ctx, datastore.Agent{ID: "a", SerialNumber: "1\x00"})
			}, "NUL"},
			otherTest{"KV key with NUL", func() error { return s.PutKV(ctx, "a\x00", nil) }, "NUL"})
	}
	for _, tt := range otherTests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}

	// Lookups of keys that cannot be stored find nothing; they do not fail.
	notFound := []struct {
		name string
		call func() error
	}{
		{"GetEntry", func() error { _, err := s.GetEntry(ctx, "\xff\x00"); return err }},
		{"DeleteEntry", func() error { _, err := s.DeleteEntry(ctx, "\xff"); return err }},
		{"GetAgent", func() error { _, err := s.GetAgent(ctx, "a\xff"); return err }},
		{"DeleteAgent", func() error { return s.DeleteAgent(ctx, "\xfe") }},
		{"GetKV", func() error { _, err := s.GetKV(ctx, "k\xff"); return err }},
	}
	if h.NoNUL {
		notFound = append(notFound, struct {
			name string
			call func() error
		}{"GetAgent NUL", func() error { _, err := s.GetAgent(ctx, "a\x00"); return err }}, struct {
			name string
			call func() error
		}{"GetKV NUL", func() error { _, err := s.GetKV(ctx, "k\x00"); return err }})
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !errors.Is(err, datastore.ErrNotFound) {
				t.Errorf("err = %v, want ErrNotFound", err)
			}
		})
	}
}

// FuzzEntryRoundTrip: whatever the store accepts comes back exactly.
func FuzzEntryRoundTrip(f *testing.F, h *Harness) {
	f.Add("uid:1000", "hint", "web.example.org", "/web")
	f.Add("path:/usr/bin/wéb ✓ \"q\" <a>&", "\x00nul\tand\ttabs", "*.x", "/a/b")
	f.Add("\u2028\u2029", "\xff", "", "/c")
	f.Add(`\u0000`, `{"json":[1]}`, "[]", "/d")
	f.Add(`\u0000`, `{"json":[1]}`, "{a,b}", "/d")
	f.Add(`"quoted",comma`, `NULL`, `{}`, "/e")
	s := h.open(f, h.NewDB(f))
	f.Fuzz(func(t *testing.T, value, hint, dns, path string) {
		id, err := spiffeid.FromPath(td, path)
		if err != nil {
			return
		}
		e := registration.Entry{
			SPIFFEID:  id,
			ParentID:  spiffeid.RequireFromPath(td, "/agent"),
			Selectors: []registration.Selector{{Type: "t", Value: value}, {Type: "u", Value: hint}},
			Hint:      hint,
			DNSNames:  []string{dns, value},
		}
		res, err := s.CreateEntries(context.Background(), []registration.Entry{e})
		if err != nil {
			return // refused as a whole: fine, as long as nothing was altered
		}
		if res[0].Err != nil {
			if !errors.Is(res[0].Err, datastore.ErrAlreadyExists) {
				t.Fatalf("entry error: %v", res[0].Err)
			}
			return
		}
		got, err := s.GetEntry(context.Background(), res[0].Entry.ID)
		if err != nil {
			t.Fatalf("GetEntry: %v", err)
		}
		if got.Hint != e.Hint || !slices.Equal(got.Selectors, e.Selectors) || !slices.Equal(got.DNSNames, e.DNSNames) || got.SPIFFEID != e.SPIFFEID {
			t.Fatalf("round trip changed the entry:\n got %#v\nwant %#v", got, e)
		}
		if _, err := s.DeleteEntry(context.Background(), got.ID); err != nil {
			t.Fatalf("DeleteEntry: %v", err)
		}
	})
}
