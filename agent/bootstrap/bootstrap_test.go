package bootstrap_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/agent/bootstrap"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func cert(t testing.TB, isCA bool) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"}, NotBefore: time.Now(),
		NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func pemOf(cs ...*x509.Certificate) []byte {
	var out []byte
	for _, c := range cs {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return out
}

func spiffeOf(t testing.TB, cs ...*x509.Certificate) []byte {
	b := spiffebundle.New(td)
	b.SetX509Authorities(cs)
	out, err := b.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestParse(t *testing.T) {
	ca1, ca2, leaf := cert(t, true), cert(t, true), cert(t, false)
	tests := []struct {
		name    string
		data    []byte
		format  string
		want    int
		wantErr string
	}{
		{name: "pem", data: pemOf(ca1, ca2), format: "pem", want: 2},
		{name: "pem default", data: pemOf(ca1), want: 1},
		{name: "pem skips other blocks", data: append([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"), pemOf(ca1)...), want: 1},
		{name: "spiffe", data: spiffeOf(t, ca1, ca2), format: "spiffe", want: 2},
		{name: "spiffe given as pem", data: spiffeOf(t, ca1), format: "pem", wantErr: "no certificates found"},
		{name: "pem given as spiffe", data: pemOf(ca1), format: "spiffe", wantErr: "spiffebundle"},
		{name: "empty", data: nil, wantErr: "no certificates found"},
		{name: "garbage certificate", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2}}), wantErr: "pem: x509"},
		{name: "leaf", data: pemOf(ca1, leaf), wantErr: "is not a CA certificate"},
		{name: "spiffe leaf", data: spiffeOf(t, leaf), format: "spiffe", wantErr: "is not a CA certificate"},
		{name: "spiffe without x509", data: []byte(`{"keys":[]}`), format: "spiffe", wantErr: "no certificates found"},
		{name: "unknown format", data: pemOf(ca1), format: "der", wantErr: "unknown format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bootstrap.Parse(td, tt.data, tt.format)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != tt.want {
				t.Fatalf("got %d certificates, %v; want %d", len(got), err, tt.want)
			}
		})
	}
}

// TestLoadRereads shows that each Load reads the file again: a bundle
// fixed on disk is used at the next bootstrap attempt.
func TestLoadRereads(t *testing.T) {
	ca1, ca2 := cert(t, true), cert(t, true)
	p := filepath.Join(t.TempDir(), "bundle.pem")
	src := &bootstrap.Source{TrustDomain: td, Path: p}
	if _, err := src.Load(context.Background()); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
	for _, c := range []*x509.Certificate{ca1, ca2} {
		if err := os.WriteFile(p, pemOf(c), 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := src.Load(context.Background())
		if err != nil || len(got) != 1 || !got[0].Equal(c) {
			t.Fatalf("Load = %v, %v", got, err)
		}
	}
	big := make([]byte, bootstrap.MaxSize+1)
	if err := os.WriteFile(p, big, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Load(context.Background()); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("oversized file: err = %v", err)
	}
}

func TestLoadURL(t *testing.T) {
	ca := cert(t, true)
	mux := http.NewServeMux()
	mux.HandleFunc("/bundle.json", func(w http.ResponseWriter, _ *http.Request) { w.Write(spiffeOf(t, ca)) })
	mux.HandleFunc("/missing", func(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, _ *http.Request) { w.Write(make([]byte, bootstrap.MaxSize+10)) })
	plain := httptest.NewServer(mux)
	defer plain.Close()
	mux.HandleFunc("/to-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/bundle.json", http.StatusFound)
	})
	srv := httptest.NewTLSServer(mux)
	mux.HandleFunc("/to-https", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, srv.URL+"/bundle.json", http.StatusFound)
	})
	defer srv.Close()
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())
	noHTTP := func(u string) error {
		if !strings.HasPrefix(u, "https://") {
			return errors.New("not https")
		}
		return nil
	}
	tests := []struct {
		name    string
		src     bootstrap.Source
		wantErr string
	}{
		{name: "https spiffe", src: bootstrap.Source{URL: srv.URL + "/bundle.json", Format: "spiffe", RootCAs: roots}},
		{name: "unknown authority", src: bootstrap.Source{URL: srv.URL + "/bundle.json", Format: "spiffe"},
			wantErr: "certificate signed by unknown authority"},
		{name: "404", src: bootstrap.Source{URL: srv.URL + "/missing", RootCAs: roots}, wantErr: "HTTP 404"},
		{name: "too large", src: bootstrap.Source{URL: srv.URL + "/huge", RootCAs: roots}, wantErr: "larger than"},
		{name: "redirect to http refused", src: bootstrap.Source{URL: srv.URL + "/to-http", Format: "spiffe", CheckURL: noHTTP, RootCAs: roots},
			wantErr: "not https"},
		{name: "redirects refused without CheckURL", src: bootstrap.Source{URL: srv.URL + "/to-http", Format: "spiffe", RootCAs: roots},
			wantErr: "redirects are not followed"},
		{name: "redirect allowed", src: bootstrap.Source{URL: srv.URL + "/to-https", Format: "spiffe", CheckURL: noHTTP, RootCAs: roots}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.src.TrustDomain = td
			got, err := tt.src.Load(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || len(got) != 1 || !got[0].Equal(ca) {
				t.Fatalf("Load = %v, %v", got, err)
			}
		})
	}
}
