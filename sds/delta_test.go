package sds_test

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/sds"
)

type deltaStream struct {
	t     testing.TB
	s     secretv3.SecretDiscoveryService_DeltaSecretsClient
	resps chan *discoveryv3.DeltaDiscoveryResponse
	errc  chan error
}

func (e *env) openDelta() *deltaStream {
	e.t.Helper()
	ctx, cancel := context.WithCancel(headerCtx(context.Background()))
	e.t.Cleanup(cancel)
	s, err := e.client().DeltaSecrets(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	d := &deltaStream{t: e.t, s: s, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 16), errc: make(chan error, 1)}
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				d.errc <- err
				return
			}
			d.resps <- r
		}
	}()
	return d
}

func (d *deltaStream) send(req *discoveryv3.DeltaDiscoveryRequest) {
	d.t.Helper()
	req.TypeUrl = sds.SecretTypeURL
	if err := d.s.Send(req); err != nil && !errors.Is(err, io.EOF) {
		d.t.Fatal(err)
	}
}

// recv returns the next response's resources by name (with their
// versions) and its removed names.
func (d *deltaStream) recv() (*discoveryv3.DeltaDiscoveryResponse, map[string]*discoveryv3.Resource) {
	d.t.Helper()
	select {
	case r := <-d.resps:
		if err := r.Validate(); err != nil {
			d.t.Fatalf("delta response does not validate: %v", err)
		}
		if r.Nonce == "" || r.SystemVersionInfo == "" || r.TypeUrl != sds.SecretTypeURL {
			d.t.Fatalf("delta response nonce %q version %q type %q", r.Nonce, r.SystemVersionInfo, r.TypeUrl)
		}
		out := map[string]*discoveryv3.Resource{}
		for _, res := range r.Resources {
			s := decode(d.t, res.GetResource().GetTypeUrl(), res.GetResource().GetValue())
			if s.Name != res.Name || res.Version == "" {
				d.t.Fatalf("resource %q holds secret %q, version %q", res.Name, s.Name, res.Version)
			}
			out[res.Name] = res
		}
		return r, out
	case err := <-d.errc:
		d.t.Fatalf("delta stream ended: %v", err)
	case <-time.After(10 * time.Second):
		d.t.Fatal("no delta response within 10s")
	}
	return nil, nil
}

func (d *deltaStream) none(dur time.Duration) {
	d.t.Helper()
	select {
	case r := <-d.resps:
		d.t.Fatalf("unexpected delta response: %d resources, removed %v", len(r.Resources), r.RemovedResources)
	case err := <-d.errc:
		d.t.Fatalf("delta stream ended: %v", err)
	case <-time.After(dur):
	}
}

func TestDeltaSubscribeRotateUnsubscribe(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	d := e.openDelta()
	d.send(&discoveryv3.DeltaDiscoveryRequest{Node: envoyNode(1, 30), ResourceNamesSubscribe: []string{"default"}})
	r1, res := d.recv()
	if len(res) != 1 || res["default"] == nil {
		t.Fatalf("initial: %v", res)
	}
	v1 := res["default"].Version

	// ACK, then subscribe to one more: only the new one is sent.
	d.send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r1.Nonce})
	d.none(100 * time.Millisecond)
	d.send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r1.Nonce, ResourceNamesSubscribe: []string{"ROOTCA"}})
	r2, res := d.recv()
	if len(res) != 1 || res["ROOTCA"] == nil {
		t.Fatalf("after subscribing ROOTCA: %v", res)
	}

	// Rotation: only the certificate, with a new version.
	n := e.rotate(w)
	r3, res := d.recv()
	if len(res) != 1 || res["default"] == nil || res["default"].Version == v1 {
		t.Fatalf("after rotation: %v", res)
	}
	s := decode(t, res["default"].GetResource().GetTypeUrl(), res["default"].GetResource().GetValue())
	if !certOf(t, s).Equal(leafOf(t, n)) {
		t.Fatal("rotated certificate not sent")
	}

	// NACK: stream kept, nothing resent.
	d.send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r3.Nonce, ErrorDetail: &rpcstatus.Status{Code: 3, Message: "no"}})
	d.none(100 * time.Millisecond)

	// A stale nonce does not stop a subscription change; unsubscribing
	// stops pushes for that name.
	d.send(&discoveryv3.DeltaDiscoveryRequest{ResponseNonce: r2.Nonce, ResourceNamesUnsubscribe: []string{"default"}})
	d.none(100 * time.Millisecond) // let the server apply it
	e.rotate(w)
	d.none(150 * time.Millisecond)
	other, err := newCA(t)
	if err != nil {
		t.Fatal(err)
	}
	e.setBundle(append(e.ca.Bundle(), other.Certificate()))
	if _, res := d.recv(); len(res) != 1 || res["ROOTCA"] == nil {
		t.Fatalf("bundle change: %v", res)
	}
}

func TestDeltaWildcardAndRemoval(t *testing.T) {
	e := newEnv(t)
	w1 := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	w2 := mkEntry("e2", "/w2", 1, uidSelector(os.Getuid()))
	e.addEntries(w1, w2)
	d := e.openDelta()
	d.send(&discoveryv3.DeltaDiscoveryRequest{}) // legacy wildcard
	_, res := d.recv()
	for _, name := range []string{w1.SPIFFEID.String(), w2.SPIFFEID.String(), "spiffe://example.org"} {
		if res[name] == nil {
			t.Fatalf("wildcard lacks %q: %v", name, res)
		}
	}
	e.cache.UpdateEntries(false, nil, []string{"e2"})
	r, res := d.recv()
	if len(res) != 0 || len(r.RemovedResources) != 1 || r.RemovedResources[0] != w2.SPIFFEID.String() {
		t.Fatalf("after removing e2: resources %v removed %v", res, r.RemovedResources)
	}
}

func TestDeltaInitialVersionsNotResent(t *testing.T) {
	e := newEnv(t)
	w := mkEntry("e1", "/w1", 1, uidSelector(os.Getuid()))
	e.addEntries(w)
	d := e.openDelta()
	d.send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"default"}})
	_, res := d.recv()
	v := res["default"].Version

	// A reconnecting client that holds the current version gets nothing
	// until it changes; versions are content hashes, stable across streams.
	d2 := e.openDelta()
	d2.send(&discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"default"},
		InitialResourceVersions: map[string]string{"default": v}})
	d2.none(150 * time.Millisecond)
	e.rotate(w)
	if _, res := d2.recv(); res["default"] == nil || res["default"].Version == v {
		t.Fatalf("after rotation: %v", res)
	}
}

func TestDeltaErrors(t *testing.T) {
	e := newEnv(t)
	e.addEntries(mkEntry("e1", "/w1", 1, uidSelector(os.Getuid())))
	tests := []struct {
		name     string
		req      *discoveryv3.DeltaDiscoveryRequest
		wantCode codes.Code
		wantErr  string
	}{
		{name: "unknown name", req: &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"bogus"}},
			wantCode: codes.InvalidArgument, wantErr: "unknown resource name"},
		{name: "not entitled", req: &discoveryv3.DeltaDiscoveryRequest{ResourceNamesSubscribe: []string{"spiffe://example.org/x"}},
			wantCode: codes.PermissionDenied, wantErr: "not entitled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := e.openDelta()
			d.send(tt.req)
			select {
			case err := <-d.errc:
				if status.Code(err) != tt.wantCode || !errContains(err, tt.wantErr) {
					t.Fatalf("err = %v", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("stream did not end")
			}
		})
	}
}
