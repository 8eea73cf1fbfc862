package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// svidStream watches a workload's X.509 context with the stock client and
// hands every update to wait.
type svidStream struct {
	t       testing.TB
	updates chan []*x509svid.SVID
}

func watchSVIDs(t testing.TB, addr string) *svidStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	client, err := workloadapi.New(ctx, workloadapi.WithAddr(addr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	s := &svidStream{t: t, updates: make(chan []*x509svid.SVID, 64)}
	go func() {
		_ = client.WatchX509Context(ctx, watcher(func(c *workloadapi.X509Context) {
			select {
			case s.updates <- c.SVIDs:
			case <-ctx.Done():
			}
		}))
	}()
	return s
}

// wait returns the first update (within 20 s) that satisfies cond.
func (s *svidStream) wait(what string, cond func(ids map[string]*x509svid.SVID) bool) map[string]*x509svid.SVID {
	s.t.Helper()
	return s.waitWithin(20*time.Second, what, cond)
}

// waitID waits up to timeout for an update holding the SVID of id.
func (s *svidStream) waitID(id string, timeout time.Duration) {
	s.t.Helper()
	s.waitWithin(timeout, id, func(ids map[string]*x509svid.SVID) bool { return ids[id] != nil })
}

// waitWithin returns the first update within timeout that satisfies cond.
func (s *svidStream) waitWithin(d time.Duration, what string, cond func(ids map[string]*x509svid.SVID) bool) map[string]*x509svid.SVID {
	s.t.Helper()
	timeout := time.After(d)
	for {
		select {
		case svids := <-s.updates:
			ids := make(map[string]*x509svid.SVID, len(svids))
			for _, sv := range svids {
				ids[sv.ID.String()] = sv
			}
			if cond(ids) {
				return ids
			}
		case <-timeout:
			s.t.Fatalf("timed out waiting for a Workload API update: %s", what)
		}
	}
}

// lifetime is how much longer an SVID is valid.
func lifetime(s *x509svid.SVID) time.Duration { return time.Until(s.Certificates[0].NotAfter) }

// `entry update` end to end on one server: the update replaces the entry
// (selectors, TTL, SPIFFE ID), the workload's stream follows each change,
// and refusals name their reason.
func TestEntryUpdateCLI(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const (
		keep    = "spiffe://example.org/workload/keep"
		updated = "spiffe://example.org/workload/updated"
		renamed = "spiffe://example.org/workload/renamed"
	)
	srv.CreateEntry(keep, ag.ID(), "-selector", uidSelector())
	id := srv.CreateEntry(updated, ag.ID(), "-selector", uidSelector())
	stream := watchSVIDs(t, ag.Addr())
	first := stream.wait("both SVIDs", func(ids map[string]*x509svid.SVID) bool { return ids[keep] != nil && ids[updated] != nil })
	if l := lifetime(first[updated]); l < 30*time.Minute {
		t.Fatalf("default SVID lifetime %s; the TTL check below needs a longer default", l)
	}

	// A selector the workload does not have: its SVID leaves the stream.
	out := srv.MustCLI("entry", "update", "-entryID", id, "-spiffeID", updated, "-parentID", ag.ID(), "-selector", "unix:uid:424242")
	if !strings.Contains(out, "Selector         : unix:uid:424242") || strings.Contains(out, uidSelector()+"\n") {
		t.Fatalf("entry update output does not show the replaced selector set:\n%s", out)
	}
	stream.wait("the updated entry's SVID to go", func(ids map[string]*x509svid.SVID) bool { return ids[updated] == nil && ids[keep] != nil })

	// Back to the workload's selector with a 10-minute X.509 TTL: a new SVID
	// of that lifetime.
	srv.MustCLI("entry", "update", "-entryID", id, "-spiffeID", updated, "-parentID", ag.ID(), "-selector", uidSelector(),
		"-x509SVIDTTL", "600")
	// (The agent may first hand back the SVID it still holds from before
	// the update; the re-minted one follows within milliseconds.)
	got := stream.wait("an SVID with the new TTL", func(ids map[string]*x509svid.SVID) bool {
		return ids[updated] != nil && lifetime(ids[updated]) <= 600*time.Second
	})
	if l := lifetime(got[updated]); l < 500*time.Second {
		t.Fatalf("SVID after -x509SVIDTTL 600 is valid for %s more, want about 10m", l)
	}

	// A new SPIFFE ID: the stream carries the new one instead of the old.
	srv.MustCLI("entry", "update", "-entryID", id, "-spiffeID", renamed, "-parentID", ag.ID(), "-selector", uidSelector(),
		"-x509SVIDTTL", "600", "-dns", "renamed.example.org", "-hint", "renamed")
	got = stream.wait("the renamed SVID", func(ids map[string]*x509svid.SVID) bool { return ids[renamed] != nil && ids[updated] == nil })
	if dns := got[renamed].Certificates[0].DNSNames; !slices.Equal(dns, []string{"renamed.example.org"}) {
		t.Errorf("renamed SVID DNS names %v", dns)
	}

	// Refusals.
	refusals := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown entry", []string{"-entryID", "no-such-entry", "-spiffeID", updated, "-parentID", ag.ID(), "-selector", uidSelector()}, "not found"},
		{"similar to another entry", []string{"-entryID", id, "-spiffeID", keep, "-parentID", ag.ID(), "-selector", uidSelector()}, "similar entry already exists"},
		{"no selector", []string{"-entryID", id, "-spiffeID", updated, "-parentID", ag.ID()}, "at least one -selector"},
		{"no entry ID", []string{"-spiffeID", updated, "-parentID", ag.ID(), "-selector", uidSelector()}, "-entryID is required"},
		{"no parent", []string{"-entryID", id, "-spiffeID", updated, "-selector", uidSelector()}, "-parentID is required"},
		{"bad SPIFFE ID", []string{"-entryID", id, "-spiffeID", "spiffe://example.org/a/../b", "-parentID", ag.ID(), "-selector", uidSelector()}, "dot segment"},
	}
	for _, r := range refusals {
		out, err := srv.CLI(append([]string{"entry", "update"}, r.args...)...)
		if err == nil || !strings.Contains(out, r.wantErr) {
			t.Errorf("%s: err=%v, want output containing %q:\n%s", r.name, err, r.wantErr, out)
		}
	}

	// SPIRE's -data format with entry_id: both entries at once.
	var list struct {
		Entries []struct {
			ID       string `json:"id"`
			SpiffeID struct {
				TrustDomain string `json:"trust_domain"`
				Path        string `json:"path"`
			} `json:"spiffe_id"` // SPIRE's shape
			Hint string `json:"hint"`
			TTL  int    `json:"x509_svid_ttl"`
		} `json:"entries"`
	}
	must(t, json.Unmarshal([]byte(srv.MustCLI("entry", "show", "-output", "json")), &list))
	var keepID string
	for _, e := range list.Entries {
		if "spiffe://"+e.SpiffeID.TrustDomain+e.SpiffeID.Path == keep {
			keepID = e.ID
		}
	}
	data := `{"entries": [
	  {"entry_id": "` + keepID + `", "spiffe_id": "` + keep + `", "parent_id": "` + ag.ID() + `",
	   "selectors": [{"type": "unix", "value": "` + strings.TrimPrefix(uidSelector(), "unix:") + `"}], "hint": "from-file"},
	  {"entry_id": "` + id + `", "spiffe_id": {"trust_domain": "example.org", "path": "/workload/renamed"}, "parent_id": "` + ag.ID() + `",
	   "selectors": [{"type": "unix", "value": "` + strings.TrimPrefix(uidSelector(), "unix:") + `"}], "x509_svid_ttl": 900, "hint": "from-file"}
	]}`
	path := filepath.Join(env.Dir, "update.json")
	must(t, os.WriteFile(path, []byte(data), 0o600))
	srv.MustCLI("entry", "update", "-data", path)
	must(t, json.Unmarshal([]byte(srv.MustCLI("entry", "show", "-output", "json")), &list))
	if len(list.Entries) != 2 {
		t.Fatalf("%d entries after the -data update, want 2", len(list.Entries))
	}
	for _, e := range list.Entries {
		if e.Hint != "from-file" || (e.ID == id && e.TTL != 900) {
			t.Errorf("entry after the -data update: %+v", e)
		}
	}
	// A file entry without entry_id is refused before anything is sent.
	must(t, os.WriteFile(path, []byte(`{"entries": [{"spiffe_id": "`+keep+`"}]}`), 0o600))
	if out, err := srv.CLI("entry", "update", "-data", path); err == nil || !strings.Contains(out, "entry_id is required") {
		t.Errorf("-data without entry_id: err=%v\n%s", err, out)
	}

	audit, err := os.ReadFile(filepath.Join(srv.Dir, "data", "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(audit), `"entry_update"`) || !strings.Contains(string(audit), `"rejected"`) {
		t.Errorf("updates and refusals not audited:\n%s", audit)
	}
}

// An update made on server A reaches the agent of server B through the
// shared PostgreSQL database: the new TTL, then the loss of the SVID.
func TestEntryUpdateHA(t *testing.T) {
	ds := postgresDatastore(t)
	env := testenv.New(t)
	a := env.StartServer(testenv.WithHCL(ds))
	b := env.StartServer(testenv.WithHCL(ds), testenv.WithCAFrom(a))
	agB := env.StartAgent(b, b.Token())
	const (
		keep    = "spiffe://example.org/ha/keep"
		updated = "spiffe://example.org/ha/updated"
	)
	a.CreateEntry(keep, agB.ID(), "-selector", uidSelector())
	id := a.CreateEntry(updated, agB.ID(), "-selector", uidSelector())
	stream := watchSVIDs(t, agB.Addr())
	stream.wait("both SVIDs at B's agent", func(ids map[string]*x509svid.SVID) bool { return ids[keep] != nil && ids[updated] != nil })

	start := time.Now()
	a.MustCLI("entry", "update", "-entryID", id, "-spiffeID", updated, "-parentID", agB.ID(), "-selector", uidSelector(),
		"-x509SVIDTTL", "300")
	stream.wait("the new TTL at B's agent", func(ids map[string]*x509svid.SVID) bool {
		return ids[updated] != nil && lifetime(ids[updated]) <= 300*time.Second
	})
	t.Logf("update on A → re-minted SVID at B's agent: %s", time.Since(start))
	if out := b.MustCLI("entry", "show", "-entryID", id); !strings.Contains(out, "X509-SVID TTL    : 300") {
		t.Fatalf("server B does not show the update made on A:\n%s", out)
	}

	a.MustCLI("entry", "update", "-entryID", id, "-spiffeID", updated, "-parentID", agB.ID(), "-selector", "unix:uid:424242")
	stream.wait("the SVID to leave B's agent", func(ids map[string]*x509svid.SVID) bool { return ids[updated] == nil && ids[keep] != nil })
}
