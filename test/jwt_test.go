package test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// waitForJWTSVID polls with the stock client until the agent hands out a
// JWT-SVID for want.
func waitForJWTSVID(t *testing.T, addr, want, audience string) *jwtsvid.SVID {
	t.Helper()
	var got *jwtsvid.SVID
	id := spiffeid.RequireFromString(want)
	testenv.WaitFor(t, 15*time.Second, "JWT-SVID "+want, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience, Subject: id}, workloadapi.WithAddr(addr))
		if err != nil {
			return false
		}
		got = s
		return true
	})
	return got
}

// A workload gets a JWT-SVID from the real agent, signed by the real
// server, and stock go-spiffe clients fetch, validate and parse it; the
// signing key survives a server restart.
func TestJWTSVIDEndToEnd(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	ag := env.StartAgent(srv, srv.Token())
	const want = "spiffe://example.org/workload/jwt"
	const aud = "https://api.example.org"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector(), "-jwtSVIDTTL", "120")
	svid := waitForJWTSVID(t, ag.Addr(), want, aud)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if svid.ID.String() != want || len(svid.Audience) != 1 || svid.Audience[0] != aud {
		t.Fatalf("JWT-SVID for %s aud %v", svid.ID, svid.Audience)
	}
	iat, _ := svid.Claims["iat"].(float64)
	if ttl := svid.Expiry.Sub(time.Unix(int64(iat), 0)); ttl != 120*time.Second {
		t.Errorf("token lifetime %s, want the entry's 120s", ttl)
	}
	bundles, err := workloadapi.FetchJWTBundles(ctx, workloadapi.WithAddr(ag.Addr()))
	if err != nil {
		t.Fatalf("FetchJWTBundles: %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(svid.Marshal(), bundles, []string{aud}); err != nil {
		t.Fatalf("token does not validate with the fetched bundle: %v", err)
	}
	validated, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), aud, workloadapi.WithAddr(ag.Addr()))
	if err != nil {
		t.Fatalf("ValidateJWTSVID: %v", err)
	}
	if validated.ID.String() != want || validated.Claims["sub"] != want {
		t.Fatalf("validated %s claims %v", validated.ID, validated.Claims)
	}
	_, err = workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), "https://other.example.org", workloadapi.WithAddr(ag.Addr()))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("wrong audience: %v, want InvalidArgument", err)
	}
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{}, workloadapi.WithAddr(ag.Addr())); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("no audience: %v, want InvalidArgument", err)
	}
	other := spiffeid.RequireFromString("spiffe://example.org/workload/not-mine")
	if _, err := workloadapi.FetchJWTSVID(ctx, jwtsvid.Params{Audience: aud, Subject: other}, workloadapi.WithAddr(ag.Addr())); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("ID not entitled: %v, want PermissionDenied", err)
	}

	// The key is persisted owner-only and survives a restart: tokens issued
	// before it still validate at the agent, and new ones use the same kid.
	fi, err := os.Stat(filepath.Join(srv.Dir, "data", "jwt", "jwt-key.pem"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("JWT key file: %v mode %v, want 0600", err, fi)
	}
	srv.Stop()
	srv.Start()
	fresh := waitForJWTSVID(t, ag.Addr(), want, "https://after-restart.example.org")
	if _, err := workloadapi.ValidateJWTSVID(ctx, svid.Marshal(), aud, workloadapi.WithAddr(ag.Addr())); err != nil {
		t.Fatalf("token from before the server restart no longer validates: %v", err)
	}
	if _, err := jwtsvid.ParseAndValidate(fresh.Marshal(), bundles, []string{"https://after-restart.example.org"}); err != nil {
		t.Fatalf("token from after the restart does not validate with the bundle from before: %v", err)
	}
}

// The server signs JWT-SVIDs only for entries authorised for the calling
// agent, like X.509-SVIDs.
func TestServerSignsJWTOnlyForAuthorisedEntries(t *testing.T) {
	env := testenv.New(t)
	srv := env.StartServer()
	tok := srv.Token()
	c := nodeClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, key, err := attestWithToken(ctx, c, tok)
	if err != nil {
		t.Fatal(err)
	}
	agentID := "spiffe://example.org/agent/join_token/" + tok
	c.SetBundle(res.Bundle)
	c.SetSVID(&x509svid.SVID{ID: spiffeid.RequireFromString(agentID), Certificates: res.Certs, PrivateKey: key})
	mine := srv.CreateEntry("spiffe://example.org/mine", agentID, "-selector", "unix:uid:1")
	other := srv.CreateEntry("spiffe://example.org/not-mine", "spiffe://example.org/agent/join_token/someone-else", "-selector", "unix:uid:1")

	got, err := c.NewJWTSVID(ctx, mine, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwtsvid.ParseInsecure(got.GetToken(), []string{"b"})
	if err != nil || parsed.ID.String() != "spiffe://example.org/mine" || got.GetSpiffeId() != parsed.ID.String() {
		t.Fatalf("token %v for %v (%v)", parsed, got.GetSpiffeId(), err)
	}
	for _, tt := range []struct {
		name     string
		entry    string
		audience []string
		wantCode codes.Code
	}{
		{name: "another agent's entry", entry: other, audience: []string{"a"}, wantCode: codes.PermissionDenied},
		{name: "unknown entry", entry: "no-such-entry", audience: []string{"a"}, wantCode: codes.PermissionDenied},
		{name: "no audience", entry: mine, wantCode: codes.InvalidArgument},
		{name: "empty audience value", entry: mine, audience: []string{""}, wantCode: codes.InvalidArgument},
		{name: "huge audience", entry: mine, audience: []string{strings.Repeat("a", 4096)}, wantCode: codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.NewJWTSVID(ctx, tt.entry, tt.audience)
			if status.Code(err) != tt.wantCode {
				t.Fatalf("err = %v, want %s", err, tt.wantCode)
			}
		})
	}
	srv.MustCLI("agent", "evict", "-spiffeID", agentID)
	if _, err := c.NewJWTSVID(ctx, mine, []string{"a"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("evicted agent: %v, want PermissionDenied", err)
	}
}
