package adminapi_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/server/adminapi"
	"github.com/hallmarkid/hallmark/server/ca"
	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// newAuthorityFixture builds an admin API over a real CA and JWT signer in
// temporary directories.
func newAuthorityFixture(t testing.TB) (*adminapi.Server, *auditLog, *ca.CA, *jwtsigner.Signer) {
	t.Helper()
	c, err := ca.New(ca.Config{TrustDomain: own, Dir: filepath.Join(t.TempDir(), "ca")})
	if err != nil {
		t.Fatal(err)
	}
	j, err := jwtsigner.New(jwtsigner.Config{TrustDomain: own, Dir: filepath.Join(t.TempDir(), "jwt")})
	if err != nil {
		t.Fatal(err)
	}
	a := &auditLog{}
	return adminapi.New(adminapi.Config{TrustDomain: own, Audit: a, Authorities: adminapi.Authorities{X509: c, JWT: j}}), a, c, j
}

// authorityAPI is the X.509 or the JWT half of the local authority API.
type authorityAPI struct {
	kind     string
	list     func(context.Context, *apiv1.ListLocalAuthoritiesRequest) (*apiv1.ListLocalAuthoritiesResponse, error)
	prepare  func(context.Context, *apiv1.PrepareLocalAuthorityRequest) (*apiv1.LocalAuthority, error)
	activate func(context.Context, *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error)
	taint    func(context.Context, *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error)
	revoke   func(context.Context, *apiv1.LocalAuthorityRequest) (*apiv1.LocalAuthority, error)
}

func apis(s *adminapi.Server) []authorityAPI {
	return []authorityAPI{
		{kind: "x509", list: s.ListX509Authorities, prepare: s.PrepareX509Authority, activate: s.ActivateX509Authority,
			taint: s.TaintX509Authority, revoke: s.RevokeX509Authority},
		{kind: "jwt", list: s.ListJWTAuthorities, prepare: s.PrepareJWTAuthority, activate: s.ActivateJWTAuthority,
			taint: s.TaintJWTAuthority, revoke: s.RevokeJWTAuthority},
	}
}

func req(id string) *apiv1.LocalAuthorityRequest {
	return &apiv1.LocalAuthorityRequest{AuthorityId: id}
}

// TestLocalAuthorityAPI drives both halves through prepare, activate,
// taint and revoke, checking the listing, the audit record of each action
// (and of each refusal) and the status codes of the refusals.
func TestLocalAuthorityAPI(t *testing.T) {
	t.Parallel()
	srv, audit, c, j := newAuthorityFixture(t)
	ctx := context.Background()
	for _, api := range apis(srv) {
		t.Run(api.kind, func(t *testing.T) {
			l, err := api.list(ctx, nil)
			if err != nil || len(l.GetAuthorities()) != 1 || l.GetAuthorities()[0].GetStatus() != "active" {
				t.Fatalf("list: %v %v", l, err)
			}
			first := l.GetAuthorities()[0]
			switch api.kind {
			case "x509":
				cert, err := x509.ParseCertificate(first.GetX509Certificate())
				if err != nil || !cert.Equal(c.Certificate()) || first.GetSubjectKeyId() == "" {
					t.Fatalf("x509 listing does not carry the active certificate: %v", err)
				}
			case "jwt":
				if first.GetAuthorityId() != j.ActiveKeyID() || first.GetAlgorithm() != "ES256" || len(first.GetPublicKey()) == 0 {
					t.Fatalf("jwt listing %v", first)
				}
			}
			action := func(verb string) string { return api.kind + "_authority_" + verb }

			refusals := []struct {
				name     string
				call     func() error
				action   string
				wantCode codes.Code
				wantErr  string
			}{
				{name: "activate without prepared", call: func() error { _, err := api.activate(ctx, req("0123456789abcdef")); return err },
					action: action("activate"), wantCode: codes.NotFound, wantErr: "run prepare first"},
				{name: "activate without ID", call: func() error { _, err := api.activate(ctx, req("")); return err },
					action: action("activate"), wantCode: codes.InvalidArgument, wantErr: "ID is required"},
				{name: "taint the active", call: func() error { _, err := api.taint(ctx, req(first.GetAuthorityId())); return err },
					action: action("taint"), wantCode: codes.FailedPrecondition, wantErr: "active"},
				{name: "revoke the active", call: func() error { _, err := api.revoke(ctx, req(first.GetAuthorityId())); return err },
					action: action("revoke"), wantCode: codes.FailedPrecondition, wantErr: "active"},
				{name: "revoke unknown", call: func() error { _, err := api.revoke(ctx, req("0123456789abcdef")); return err },
					action: action("revoke"), wantCode: codes.NotFound, wantErr: "no such"},
				{name: "oversized ID", call: func() error { _, err := api.taint(ctx, req(string(make([]byte, 200)))); return err },
					action: action("taint"), wantCode: codes.InvalidArgument, wantErr: "longer than"},
			}
			for _, tt := range refusals {
				err := tt.call()
				wantCode(t, err, tt.wantCode, tt.wantErr)
				if rec := audit.find(tt.action); rec == nil || rec["result"] != "rejected" || rec["reason"] == "" {
					t.Fatalf("%s: refusal not audited: %v", tt.name, rec)
				}
			}

			p, err := api.prepare(ctx, &apiv1.PrepareLocalAuthorityRequest{})
			if err != nil || p.GetStatus() != "prepared" || p.GetActivatedAt() != 0 || p.GetPublishedAt() == 0 {
				t.Fatalf("prepare: %v %v", p, err)
			}
			if rec := audit.find(action("prepare")); rec == nil || rec["authority_id"] != p.GetAuthorityId() {
				t.Fatalf("prepare audit %v", rec)
			}
			a, err := api.activate(ctx, req(p.GetAuthorityId()))
			if err != nil || a.GetStatus() != "active" {
				t.Fatalf("activate: %v %v", a, err)
			}
			if rec := audit.find(action("activate")); rec == nil || rec["authority_id"] != p.GetAuthorityId() ||
				rec["previous_authority_id"] != first.GetAuthorityId() || rec["result"] != nil {
				t.Fatalf("activate audit %v", rec)
			}
			_, err = api.revoke(ctx, req(first.GetAuthorityId()))
			wantCode(t, err, codes.FailedPrecondition, "taint it first")
			tn, err := api.taint(ctx, req(first.GetAuthorityId()))
			if err != nil || !tn.GetTainted() || tn.GetStatus() != "old" {
				t.Fatalf("taint: %v %v", tn, err)
			}
			_, err = api.taint(ctx, req(first.GetAuthorityId()))
			wantCode(t, err, codes.FailedPrecondition, "already tainted")
			if _, err := api.revoke(ctx, req(first.GetAuthorityId())); err != nil {
				t.Fatal(err)
			}
			if rec := audit.find(action("revoke")); rec == nil || rec["authority_id"] != first.GetAuthorityId() || rec["result"] != nil {
				t.Fatalf("revoke audit %v", rec)
			}
			l, err = api.list(ctx, nil)
			if err != nil || len(l.GetAuthorities()) != 1 || l.GetAuthorities()[0].GetAuthorityId() != p.GetAuthorityId() {
				t.Fatalf("list after revoke: %v %v", l, err)
			}
		})
	}
	if len(c.Bundle()) != 1 || len(j.JWTAuthorities()) != 1 {
		t.Fatalf("revoked authorities still published: %d X.509, %d JWT", len(c.Bundle()), len(j.JWTAuthorities()))
	}
}

// TestLocalAuthorityAPIDisabled: a server built without authorities refuses
// the actions with FailedPrecondition, audited.
func TestLocalAuthorityAPIDisabled(t *testing.T) {
	t.Parallel()
	a := &auditLog{}
	srv := adminapi.New(adminapi.Config{TrustDomain: own, Audit: a})
	ctx := context.Background()
	for _, api := range apis(srv) {
		_, err := api.list(ctx, nil)
		wantCode(t, err, codes.FailedPrecondition, "no "+map[string]string{"x509": "X.509", "jwt": "JWT"}[api.kind])
		_, err = api.prepare(ctx, nil)
		wantCode(t, err, codes.FailedPrecondition, "authority management")
		if rec := a.find(api.kind + "_authority_prepare"); rec == nil || rec["result"] != "rejected" {
			t.Fatalf("refusal not audited: %v", rec)
		}
	}
}

// BenchmarkListX509Authorities measures `localauthority x509 show` on the
// server side.
func BenchmarkListX509Authorities(b *testing.B) {
	srv, _, _, _ := newAuthorityFixture(b)
	if _, err := srv.PrepareX509Authority(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.ListX509Authorities(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPrepareX509Authority measures a prepare: an ECDSA P-256 key,
// a self-signed certificate and the atomic write of the state file.
func BenchmarkPrepareX509Authority(b *testing.B) {
	srv, _, _, _ := newAuthorityFixture(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.PrepareX509Authority(context.Background(), nil); err != nil {
			b.Fatal(err)
		}
	}
}
