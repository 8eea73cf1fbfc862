package sds_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/sds"
)

func serial(t testing.TB, r *discoveryv3.DiscoveryResponse, name string) string {
	t.Helper()
	s, ok := secrets(t, r)[name]
	if !ok {
		t.Fatalf("response lacks %q", name)
	}
	return certOf(t, s).SerialNumber.String()
}

func version(t testing.TB, r *discoveryv3.DiscoveryResponse) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(r.VersionInfo, 10, 64)
	if err != nil {
		t.Fatalf("version %q: %v", r.VersionInfo, err)
	}
	return v
}

func TestStreamInitialACKRotation(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	svids := e.addEntries(w)

	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{Node: envoyNode(1, 30), ResourceNames: []string{"default"}})
	r1 := s.recv()
	sec := secrets(t, r1)
	if len(sec) != 1 || idOf(t, sec["default"]) != w.SPIFFEID.String() {
		t.Fatalf("initial response: %v", sec)
	}
	if got, want := serial(t, r1, "default"), leafOf(t, svids["e1"]).SerialNumber.String(); got != want {
		t.Fatalf("serial %s, want %s", got, want)
	}

	// ACK: nothing more to send.
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r1.VersionInfo, ResponseNonce: r1.Nonce, ResourceNames: []string{"default"}})
	s.none(150 * time.Millisecond)

	// Rotation: pushed with a higher version and a fresh nonce.
	prevVersion, prevNonce := version(t, r1), r1.Nonce
	for i := range 3 {
		n := e.rotate(w)
		r := s.recv()
		if got := serial(t, r, "default"); got != leafOf(t, n).SerialNumber.String() {
			t.Fatalf("rotation %d: serial %s, want %s", i, got, leafOf(t, n).SerialNumber)
		}
		if version(t, r) <= prevVersion || r.Nonce == prevNonce {
			t.Fatalf("rotation %d: version %s nonce %s after %d %s", i, r.VersionInfo, r.Nonce, prevVersion, prevNonce)
		}
		prevVersion, prevNonce = version(t, r), r.Nonce
		s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: []string{"default"}})
	}
	// A change that does not touch this stream's secret sends nothing.
	e.addEntries(mkEntry("other", "/other", 1, uidSelector(424242)))
	s.none(150 * time.Millisecond)
}

func TestStreamNACKKeepsStreamWithoutResend(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{Node: envoyNode(1, 30), ResourceNames: []string{"default"}})
	r1 := s.recv()

	// NACK: the stream stays, nothing is resent, even on unrelated changes.
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: "", ResponseNonce: r1.Nonce, ResourceNames: []string{"default"},
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "bad secret"}})
	s.none(150 * time.Millisecond)
	e.setBundle(e.ca.Bundle()) // same content, new pointer
	e.addEntries(mkEntry("other", "/other", 1, uidSelector(424242)))
	s.none(150 * time.Millisecond)
	// A repeated NACK is not a resend trigger either.
	s.send(&discoveryv3.DiscoveryRequest{ResponseNonce: r1.Nonce, ResourceNames: []string{"default"},
		ErrorDetail: &status.Status{Code: int32(codes.InvalidArgument), Message: "bad secret"}})
	s.none(150 * time.Millisecond)

	// New content is pushed after a NACK.
	n := e.rotate(w)
	if got := serial(t, s.recv(), "default"); got != leafOf(t, n).SerialNumber.String() {
		t.Fatalf("after NACK: serial %s, want the rotated %s", got, leafOf(t, n).SerialNumber)
	}
}

func TestStreamStaleNonceIgnored(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
	r1 := s.recv()
	e.rotate(w)
	r2 := s.recv()

	// A request answering r1 while r2 is out is stale: even its name change
	// is ignored (the client re-sends it with r2's nonce).
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r1.VersionInfo, ResponseNonce: r1.Nonce, ResourceNames: []string{"ROOTCA"}})
	s.none(150 * time.Millisecond)
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r2.VersionInfo, ResponseNonce: r2.Nonce, ResourceNames: []string{"ROOTCA"}})
	r3 := s.recv()
	if sec := secrets(t, r3); len(sec) != 1 || sec["ROOTCA"] == nil {
		t.Fatalf("after the current nonce: %v", sec)
	}
}

func TestStreamNameChangesMidStream(t *testing.T) {
	e := newEnv(t)
	w1 := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	w2 := mkEntry("e2", "/w2", 1, uidSelector(os.Getuid()))
	e.addEntries(w1, w2)
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{Node: envoyNode(1, 30), ResourceNames: []string{"default"}})
	r := s.recv()
	steps := []struct {
		names []string
		want  map[string]string // name → SPIFFE ID, "" for a bundle
	}{
		{[]string{"ROOTCA"}, map[string]string{"ROOTCA": ""}},
		{[]string{"default", "ROOTCA"}, map[string]string{"default": w1.SPIFFEID.String(), "ROOTCA": ""}},
		{[]string{w2.SPIFFEID.String()}, map[string]string{w2.SPIFFEID.String(): w2.SPIFFEID.String()}},
		{[]string{"spiffe://example.org", "ALL"}, map[string]string{"spiffe://example.org": "", "ALL": ""}},
	}
	for _, st := range steps {
		s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: st.names})
		r = s.recv()
		sec := secrets(t, r)
		if len(sec) != len(st.want) {
			t.Fatalf("names %v: got %d secrets", st.names, len(sec))
		}
		for name, id := range st.want {
			got := sec[name]
			if got == nil {
				t.Fatalf("names %v: %q missing", st.names, name)
			}
			if id != "" {
				if g := idOf(t, got); g != id {
					t.Fatalf("%q carries %s, want %s", name, g, id)
				}
				continue
			}
			// The node (Envoy 1.30) was remembered from the first request.
			roots, spiffe := rootsOf(t, got)
			if !spiffe || len(roots["example.org"]) != 1 || !roots["example.org"][0].Equal(e.ca.Certificate()) {
				t.Fatalf("%q: spiffe validator %v, roots %v", name, spiffe, roots)
			}
		}
	}
	// Unchanged names after an ACK: nothing.
	s.send(&discoveryv3.DiscoveryRequest{VersionInfo: r.VersionInfo, ResponseNonce: r.Nonce, ResourceNames: []string{"spiffe://example.org", "ALL"}})
	s.none(150 * time.Millisecond)
}

func TestStreamPushesOnlyToAffectedStreams(t *testing.T) {
	e := newEnv(t)
	w1 := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	w2 := mkEntry("e2", "/w2", 1, uidSelector(os.Getuid()))
	e.addEntries(w1, w2)
	open := func(name string) *stream {
		s := e.openStream(true)
		s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{name}})
		s.recv()
		return s
	}
	a, b, root := open(w1.SPIFFEID.String()), open(w2.SPIFFEID.String()), open("ROOTCA")

	n := e.rotate(w1)
	if got := serial(t, a.recv(), w1.SPIFFEID.String()); got != leafOf(t, n).SerialNumber.String() {
		t.Fatalf("stream of w1 got serial %s", got)
	}
	b.none(150 * time.Millisecond)
	root.none(0)

	// A bundle change reaches only the bundle stream.
	other, err := newCA(t)
	if err != nil {
		t.Fatal(err)
	}
	e.setBundle(append(e.ca.Bundle(), other.Certificate()))
	r := root.recv()
	if roots, _ := rootsOf(t, secrets(t, r)["ROOTCA"]); len(roots[""]) != 2 {
		t.Fatalf("bundle after change: %v", roots)
	}
	a.none(150 * time.Millisecond)
	b.none(0)
}

func TestStreamEntryRemovedEndsStream(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
	s.recv()
	e.cache.UpdateEntries(false, nil, []string{"e1"})
	if err := s.streamErr(); grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("after the entry was removed: %v, want PermissionDenied", err)
	}
}

func TestStreamPendingSVID(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.cache.UpdateEntries(false, []registration.Entry{w}, nil)
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
	s.none(100 * time.Millisecond)
	n := e.rotate(w)
	if got := serial(t, s.recv(), "default"); got != leafOf(t, n).SerialNumber.String() {
		t.Fatalf("serial %s", got)
	}
}

func TestStreamPendingTimesOut(t *testing.T) {
	e := newEnv(t, func(c *sds.Config) { c.PendingWait = 200 * time.Millisecond })
	e.cache.UpdateEntries(false, []registration.Entry{mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))}, nil)
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
	if err := s.streamErr(); grpcstatus.Code(err) != codes.PermissionDenied || !errContains(err, "no identity issued yet") {
		t.Fatalf("err = %v", err)
	}
}

func TestStreamNeverSendsExpiredSVID(t *testing.T) {
	future := time.Now().Add(2 * time.Hour) // past the SVIDs' 1 h TTL
	e := newEnv(t, func(c *sds.Config) {
		c.PendingWait = 200 * time.Millisecond
		c.Clock = func() time.Time { return future }
	})
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
	s := e.openStream(true)
	s.send(&discoveryv3.DiscoveryRequest{ResourceNames: []string{"default"}})
	if err := s.streamErr(); grpcstatus.Code(err) != codes.PermissionDenied {
		t.Fatalf("err = %v, want PermissionDenied (expired SVIDs are never sent)", err)
	}
}

func TestStreamWrongTypeURL(t *testing.T) {
	e := newEnv(t)
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
	s := e.openStream(true)
	if err := s.s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: "type.googleapis.com/envoy.config.cluster.v3.Cluster"}); err != nil {
		t.Fatal(err)
	}
	if err := s.streamErr(); grpcstatus.Code(err) != codes.InvalidArgument || !errContains(err, "type_url") {
		t.Fatalf("err = %v", err)
	}
}
