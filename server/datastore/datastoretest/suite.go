package datastoretest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Run runs the conformance suite. open must return a new, empty store for
// each call and close it when that test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) datastore.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s datastore.Store)
	}{
		{"Ping", testPing},
		{"EntryCreateGetListDelete", testEntryCreateGetListDelete},
		{"EntryIDs", testEntryIDs},
		{"EntryRoundTrip", testEntryRoundTrip},
		{"EntryRevisionsAndEvents", testEntryRevisionsAndEvents},
		{"EntryNotFound", testEntryNotFound},
		{"BulkDuplicates", testBulkDuplicates},
		{"BulkRollback", testBulkRollback},
		{"BulkEmpty", testBulkEmpty},
		{"BulkCanceledContext", testBulkCanceledContext},
		{"ConcurrentEntryWriters", testConcurrentEntryWriters},
		{"ListSnapshot", testListSnapshot},
		{"EntryUpdate", testEntryUpdate},
		{"EntryUpdateEvents", testEntryUpdateEvents},
		{"EntryUpdateRefused", testEntryUpdateRefused},
		{"EntryUpdateUniqueness", testEntryUpdateUniqueness},
		{"ConcurrentEntryUpdates", testConcurrentEntryUpdates},
		{"Agents", testAgents},
		{"AgentRoundTrip", testAgentRoundTrip},
		{"AgentCreateRace", testAgentCreateRace},
		{"AgentBan", testAgentBan},
		{"AgentBanRace", testAgentBanRace},
		{"AgentPromoteSerial", testAgentPromoteSerial},
		{"JoinTokens", testJoinTokens},
		{"JoinTokenExpiry", testJoinTokenExpiry},
		{"JoinTokenConsumeRace", testJoinTokenConsumeRace},
		{"JoinTokenPrune", testJoinTokenPrune},
		{"KV", testKV},
		{"KVSwap", testKVSwap},
		{"KVSwapRace", testKVSwapRace},
		{"OpObserver", testOpObserver},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, open(t))
		})
	}
}

func testPing(t *testing.T, s datastore.Store) {
	if err := s.Ping(ctx(t)); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// ctx returns a context bounded by the test's deadline (or 30 s).
func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

var td = spiffeid.RequireTrustDomainFromString("example.org")

func id(path string) spiffeid.ID { return spiffeid.RequireFromPath(td, path) }

// entry returns a minimal entry for path under the default parent with
// the given "type:value" selectors.
func entry(path string, selectors ...string) registration.Entry {
	e := registration.Entry{SPIFFEID: id(path), ParentID: id("/agent/1")}
	for _, s := range selectors {
		sel, err := registration.ParseSelector(s)
		if err != nil {
			panic(err)
		}
		e.Selectors = append(e.Selectors, sel)
	}
	return e
}

// createOne creates e and fails the test unless it was created.
func createOne(t *testing.T, s datastore.Store, e registration.Entry) registration.Entry {
	t.Helper()
	res, err := s.CreateEntries(ctx(t), []registration.Entry{e})
	if err != nil {
		t.Fatalf("CreateEntries: %v", err)
	}
	if len(res) != 1 {
		t.Fatalf("CreateEntries returned %d results, want 1", len(res))
	}
	if res[0].Err != nil {
		t.Fatalf("CreateEntries: entry error: %v", res[0].Err)
	}
	return res[0].Entry
}

// diffEntry describes how got differs from want ("" if equal). Empty and
// nil lists are equal; times compare with Equal.
func diffEntry(got, want registration.Entry) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.SPIFFEID != want.SPIFFEID {
		add("SPIFFEID", got.SPIFFEID, want.SPIFFEID)
	}
	if got.ParentID != want.ParentID {
		add("ParentID", got.ParentID, want.ParentID)
	}
	if !equalLists(got.Selectors, want.Selectors) {
		add("Selectors", got.Selectors, want.Selectors)
	}
	if got.X509SVIDTTL != want.X509SVIDTTL {
		add("X509SVIDTTL", got.X509SVIDTTL, want.X509SVIDTTL)
	}
	if got.JWTSVIDTTL != want.JWTSVIDTTL {
		add("JWTSVIDTTL", got.JWTSVIDTTL, want.JWTSVIDTTL)
	}
	if !equalLists(got.DNSNames, want.DNSNames) {
		add("DNSNames", got.DNSNames, want.DNSNames)
	}
	if !equalLists(got.FederatesWith, want.FederatesWith) {
		add("FederatesWith", got.FederatesWith, want.FederatesWith)
	}
	if got.Admin != want.Admin {
		add("Admin", got.Admin, want.Admin)
	}
	if got.Downstream != want.Downstream {
		add("Downstream", got.Downstream, want.Downstream)
	}
	if got.Hint != want.Hint {
		add("Hint", got.Hint, want.Hint)
	}
	if got.Revision != want.Revision {
		add("Revision", got.Revision, want.Revision)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	return strings.Join(d, "; ")
}

func equalLists[T comparable](a, b []T) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	return slices.Equal(a, b)
}

// diffAgent is diffEntry for agents.
func diffAgent(got, want datastore.Agent) string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s: got %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.AttestationType != want.AttestationType {
		add("AttestationType", got.AttestationType, want.AttestationType)
	}
	if !equalLists(got.Selectors, want.Selectors) {
		add("Selectors", got.Selectors, want.Selectors)
	}
	if got.SerialNumber != want.SerialNumber {
		add("SerialNumber", got.SerialNumber, want.SerialNumber)
	}
	if got.NewSerialNumber != want.NewSerialNumber {
		add("NewSerialNumber", got.NewSerialNumber, want.NewSerialNumber)
	}
	if !got.ExpiresAt.Equal(want.ExpiresAt) {
		add("ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	}
	if got.CanReattest != want.CanReattest {
		add("CanReattest", got.CanReattest, want.CanReattest)
	}
	if got.Banned != want.Banned {
		add("Banned", got.Banned, want.Banned)
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if !got.UpdatedAt.Equal(want.UpdatedAt) {
		add("UpdatedAt", got.UpdatedAt, want.UpdatedAt)
	}
	return strings.Join(d, "; ")
}

// checkCreatedAt checks a store-assigned time lies within [before, after],
// allowing for backends that truncate to microseconds.
func checkCreatedAt(t *testing.T, what string, got, before, after time.Time) {
	t.Helper()
	if got.Before(before.Add(-time.Millisecond)) || got.After(after.Add(time.Millisecond)) {
		t.Errorf("%s = %v, want between %v and %v", what, got, before, after)
	}
}
