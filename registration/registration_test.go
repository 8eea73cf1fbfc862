package registration_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/registration"
)

func TestParseID(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{name: "ok", in: "spiffe://example.org/ns/default/sa/web"},
		{name: "dot segment", in: "spiffe://example.org/a/./b", wantErr: "dot segment"},
		{name: "dot dot segment", in: "spiffe://example.org/a/../b", wantErr: "dot segment"},
		{name: "empty segment", in: "spiffe://example.org/a//b", wantErr: "empty segment"},
		{name: "trailing slash", in: "spiffe://example.org/a/", wantErr: "trailing"},
		{name: "percent encoding", in: "spiffe://example.org/a%2Fb", wantErr: "path segment characters"},
		{name: "uppercase trust domain", in: "spiffe://Example.org/a", wantErr: "trust domain characters"},
		{name: "query", in: "spiffe://example.org/a?x=1", wantErr: "path segment characters"},
		{name: "fragment", in: "spiffe://example.org/a#x", wantErr: "path segment characters"},
		{name: "wrong scheme", in: "https://example.org/a", wantErr: "scheme"},
		{name: "userinfo", in: "spiffe://user@example.org/a", wantErr: "trust domain characters"},
		{name: "port", in: "spiffe://example.org:8080/a", wantErr: "trust domain characters"},
		{name: "too long", in: "spiffe://example.org/" + strings.Repeat("a", 2048), wantErr: "longer than 2048"},
		{name: "empty", in: "", wantErr: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := registration.ParseID(tt.in)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestParseIDInDomain(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	if _, err := registration.ParseIDInDomain("spiffe://example.org/a", td); err != nil {
		t.Fatal(err)
	}
	_, err := registration.ParseIDInDomain("spiffe://other.org/a", td)
	checkErr(t, err, "not in trust domain")
}

func TestParseSelector(t *testing.T) {
	tests := []struct {
		name      string
		in        string
		wantType  string
		wantValue string
		wantErr   string
	}{
		{name: "unix uid", in: "unix:uid:1000", wantType: "unix", wantValue: "uid:1000"},
		{name: "k8s label with colons", in: "k8s:pod-label:app:web", wantType: "k8s", wantValue: "pod-label:app:web"},
		{name: "no colon", in: "unix", wantErr: "want type:value"},
		{name: "empty type", in: ":x", wantErr: "type is empty"},
		{name: "empty value", in: "unix:", wantErr: "value is empty"},
		{name: "uppercase type", in: "Unix:uid:1", wantErr: "only a-z"},
		{name: "control char", in: "unix:uid:1\n", wantErr: "control character"},
		{name: "too long", in: "unix:" + strings.Repeat("a", 2000), wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := registration.ParseSelector(tt.in)
			checkErr(t, err, tt.wantErr)
			if err == nil && (s.Type != tt.wantType || s.Value != tt.wantValue) {
				t.Fatalf("got %q/%q", s.Type, s.Value)
			}
		})
	}
}

func TestSelectorsKeyIgnoresOrderAndDuplicates(t *testing.T) {
	a := []registration.Selector{{Type: "unix", Value: "uid:1"}, {Type: "k8s", Value: "ns:x"}}
	b := []registration.Selector{{Type: "k8s", Value: "ns:x"}, {Type: "unix", Value: "uid:1"}, {Type: "unix", Value: "uid:1"}}
	if registration.SelectorsKey(a) != registration.SelectorsKey(b) {
		t.Fatal("keys differ")
	}
	if registration.SelectorsKey(a) == registration.SelectorsKey(a[:1]) {
		t.Fatal("different sets share a key")
	}
}

func TestEntryValidate(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	base := func() registration.Entry {
		return registration.Entry{
			SPIFFEID:  spiffeid.RequireFromString("spiffe://example.org/w"),
			ParentID:  spiffeid.RequireFromString("spiffe://example.org/agent/x"),
			Selectors: []registration.Selector{{Type: "unix", Value: "uid:1"}},
		}
	}
	tests := []struct {
		name    string
		mod     func(*registration.Entry)
		wantErr string
	}{
		{name: "ok", mod: func(*registration.Entry) {}},
		{name: "other trust domain", mod: func(e *registration.Entry) { e.SPIFFEID = spiffeid.RequireFromString("spiffe://evil.org/w") }, wantErr: "not in trust domain"},
		{name: "parent other trust domain", mod: func(e *registration.Entry) { e.ParentID = spiffeid.RequireFromString("spiffe://evil.org/a") }, wantErr: "not in trust domain"},
		{name: "no path", mod: func(e *registration.Entry) { e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org") }, wantErr: "no path"},
		{name: "no selectors", mod: func(e *registration.Entry) { e.Selectors = nil }, wantErr: "at least one selector"},
		{name: "bad selector", mod: func(e *registration.Entry) { e.Selectors[0].Value = "" }, wantErr: "value is empty"},
		{name: "negative ttl", mod: func(e *registration.Entry) { e.X509SVIDTTL = -time.Second }, wantErr: "out of range"},
		{name: "bad dns", mod: func(e *registration.Entry) { e.DNSNames = []string{"a..b"} }, wantErr: "bad label"},
		{name: "wildcard dns", mod: func(e *registration.Entry) { e.DNSNames = []string{"*.example.org"} }},
		{name: "dns with space", mod: func(e *registration.Entry) { e.DNSNames = []string{"a b.org"} }, wantErr: "bad character"},
		{name: "agent namespace", mod: func(e *registration.Entry) { e.SPIFFEID = e.ParentID }, wantErr: "is reserved"},
		{name: "agent namespace root", mod: func(e *registration.Entry) { e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/agent") }, wantErr: "is reserved"},
		{name: "server ID", mod: func(e *registration.Entry) {
			e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/hallmark/server")
		}, wantErr: "is reserved"},
		{name: "server namespace", mod: func(e *registration.Entry) {
			e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/hallmark/x/y")
		}, wantErr: "is reserved"},
		{name: "prefix is not a namespace", mod: func(e *registration.Entry) { e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/agents/x") }},
		{name: "hallmark elsewhere", mod: func(e *registration.Entry) {
			e.SPIFFEID = spiffeid.RequireFromString("spiffe://example.org/svc/hallmark/agent")
		}},
		{name: "parent in the server namespace", mod: func(e *registration.Entry) {
			e.ParentID = spiffeid.RequireFromString("spiffe://example.org/hallmark/server")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := base()
			tt.mod(&e)
			checkErr(t, e.Validate(td), tt.wantErr)
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q, want it to contain %q", err, want)
	}
}

func FuzzParseID(f *testing.F) {
	for _, s := range []string{"spiffe://example.org/a/b", "spiffe://example.org", "spiffe://a/../b", "spiffe://x/%41", "spiffe://EX/a", "spiffe://x/a?b#c", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := registration.ParseID(s)
		if err != nil {
			return
		}
		// Accepted IDs round-trip and carry no forbidden constructs.
		if id.String() != s {
			t.Fatalf("round trip: %q -> %q", s, id.String())
		}
		for _, bad := range []string{"/./", "/../", "//", "%", "?", "#"} {
			if strings.Contains(strings.TrimPrefix(s, "spiffe://")+"/", bad) && bad != "//" {
				t.Fatalf("accepted %q containing %q", s, bad)
			}
		}
		if strings.Contains(strings.TrimPrefix(s, "spiffe://"), "//") {
			t.Fatalf("accepted %q with an empty segment", s)
		}
		if len(s) > registration.MaxIDLen {
			t.Fatalf("accepted %d bytes", len(s))
		}
	})
}

func FuzzParseSelector(f *testing.F) {
	for _, s := range []string{"unix:uid:1", "k8s:pod-label:a:b", ":", "a:", "x", "tpm:pcr:sha256:7:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sel, err := registration.ParseSelector(s)
		if err != nil {
			return
		}
		if sel.String() != s {
			t.Fatalf("round trip: %q -> %q", s, sel.String())
		}
		if err := sel.Validate(); err != nil {
			t.Fatalf("parsed selector fails Validate: %v", err)
		}
	})
}
