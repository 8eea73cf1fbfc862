package awsiam_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
)

var td = spiffeid.RequireTrustDomainFromString("example.org")

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

const (
	account = "123456789012"
	host    = "sts.us-east-1.amazonaws.com"
	session = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

var agentCreds = awsfake.Credentials{AccessKeyID: "ASIAAGENTTESTKEY0001", SecretAccessKey: "agent-secret", SessionToken: "agent-session-token"}

var taskRole = awsfake.Identity{
	Credentials: agentCreds,
	Arn:         "arn:aws:sts::" + account + ":assumed-role/task-role/" + session,
	Account:     account,
	UserID:      "AROAEXAMPLE:" + session,
}

func staticCreds(c awsfake.Credentials) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
}

// canary counts connections; it must see none from rejected requests.
func canary(t *testing.T) (string, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			n.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, &n
}

// signManual signs a GetCallerIdentity request with exactly the headers
// given, for requests the collector would never make.
func signManual(t testing.TB, c awsfake.Credentials, headers map[string]string, now time.Time) *awsiam.SignedRequest {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "https://"+host+"/", strings.NewReader(awsiam.Body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	sum := sha256.Sum256([]byte(awsiam.Body))
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken},
		req, hex.EncodeToString(sum[:]), "sts", "us-east-1", now); err != nil {
		t.Fatal(err)
	}
	sr := &awsiam.SignedRequest{Method: "POST", Host: host, Path: "/", Body: awsiam.Body}
	for _, n := range []string{"Authorization", "Content-Type", "X-Amz-Date", "X-Amz-Security-Token", awsiam.ChallengeHeader} {
		if v := req.Header.Get(n); v != "" {
			sr.Headers = append(sr.Headers, [2]string{n, v})
		}
	}
	return sr
}

func setHeader(sr *awsiam.SignedRequest, name, val string) {
	for i := range sr.Headers {
		if strings.EqualFold(sr.Headers[i][0], name) {
			sr.Headers[i][1] = val
			return
		}
	}
	sr.Headers = append(sr.Headers, [2]string{name, val})
}

func dropHeader(sr *awsiam.SignedRequest, name string) {
	for i := range sr.Headers {
		if strings.EqualFold(sr.Headers[i][0], name) {
			sr.Headers = append(sr.Headers[:i], sr.Headers[i+1:]...)
			return
		}
	}
}

func xmlAnswer(results ...string) string {
	return `<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">` + strings.Join(results, "") +
		`<ResponseMetadata><RequestId>x</RequestId></ResponseMetadata></GetCallerIdentityResponse>`
}

func result(arn, acct string) string {
	return "<GetCallerIdentityResult><Arn>" + arn + "</Arn><UserId>AROA:x</UserId><Account>" + acct + "</Account></GetCallerIdentityResult>"
}

// TestVerifyThreats holds one case per AWS IAM line in THREATS.md. Cases
// marked preflight must be refused without any connection to STS.
func TestVerifyThreats(t *testing.T) {
	canaryURL, canaryConns := canary(t)
	reply := func(status int, body string) func(awsfake.Identity) (int, http.Header, string) {
		return func(awsfake.Identity) (int, http.Header, string) { return status, nil, body }
	}
	tests := []struct {
		name      string
		cfg       func(c *awsiam.ServerConfig)
		creds     awsfake.Credentials
		skew      time.Duration // collector clock offset
		tamper    func(t *testing.T, sr *awsiam.SignedRequest, challenge []byte)
		reply     func(awsfake.Identity) (int, http.Header, string)
		wantErr   string
		preflight bool
	}{
		{name: "valid"},
		{name: "valid, role allow-listed", cfg: func(c *awsiam.ServerConfig) { c.RoleNames = []string{"other", "task-role"} }},
		{name: "valid, signed 4 minutes ago", skew: -4 * time.Minute},
		{name: "host not an STS endpoint", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) { sr.Host = "evil.example.com" }, wantErr: "not an allow-listed STS endpoint", preflight: true},
		{name: "host STS but not allow-listed", cfg: func(c *awsiam.ServerConfig) { c.STSHosts = []string{"sts.eu-west-1.amazonaws.com"} }, wantErr: "not an allow-listed", preflight: true},
		{name: "host with a port", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) { sr.Host = host + ":8443" }, wantErr: "not an allow-listed", preflight: true},
		{name: "path other than /", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) { sr.Path = "/?Action=AssumeRole" }, wantErr: "want /", preflight: true},
		{name: "method GET", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) { sr.Method = "GET" }, wantErr: "want POST", preflight: true},
		{name: "other action in body", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			sr.Body = "Action=AssumeRole&Version=2011-06-15&RoleArn=x"
		}, wantErr: "body is not exactly", preflight: true},
		{name: "duplicate body parameter", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			sr.Body = awsiam.Body + "&Action=GetCallerIdentity"
		}, wantErr: "body is not exactly", preflight: true},
		{name: "header not allow-listed", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			sr.Headers = append(sr.Headers, [2]string{"X-Forwarded-Host", "evil.example.com"})
		}, wantErr: "is not allowed", preflight: true},
		{name: "Host header smuggled", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			sr.Headers = append(sr.Headers, [2]string{"Host", "evil.example.com"})
		}, wantErr: "is not allowed", preflight: true},
		{name: "duplicate header", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			sr.Headers = append(sr.Headers, [2]string{"X-Amz-Date", "20200101T000000Z"})
		}, wantErr: "more than once", preflight: true},
		{name: "case-variant header", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, c []byte) {
			sr.Headers = append(sr.Headers, [2]string{"x-hallmark-challenge", awsiam.ChallengeValue("spiffe://example.org/hallmark/server", c)})
		}, wantErr: "more than once", preflight: true},
		{name: "header value with CRLF", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			setHeader(sr, "Content-Type", "application/x-www-form-urlencoded\r\nX-Evil: 1")
		}, wantErr: "malformed value", preflight: true},
		{name: "challenge header missing", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) { dropHeader(sr, awsiam.ChallengeHeader) }, wantErr: `"x-hallmark-challenge" is missing`, preflight: true},
		{name: "challenge header not signed", tamper: func(t *testing.T, sr *awsiam.SignedRequest, c []byte) {
			*sr = *signManual(t, agentCreds, map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}, time.Now())
			sr.Headers = append(sr.Headers, [2]string{awsiam.ChallengeHeader, awsiam.ChallengeValue("spiffe://example.org/hallmark/server", c)})
		}, wantErr: `does not cover "x-hallmark-challenge"`, preflight: true},
		{name: "challenge from another session", tamper: func(t *testing.T, sr *awsiam.SignedRequest, c []byte) {
			other := append([]byte(nil), c...)
			other[0] ^= 1
			*sr = *signManual(t, agentCreds, map[string]string{
				"Content-Type":         "application/x-www-form-urlencoded; charset=utf-8",
				awsiam.ChallengeHeader: awsiam.ChallengeValue("spiffe://example.org/hallmark/server", other),
			}, time.Now())
		}, wantErr: "does not match the issued challenge", preflight: true},
		{name: "challenge without a server name (older agent)", tamper: func(t *testing.T, sr *awsiam.SignedRequest, c []byte) {
			*sr = *signManual(t, agentCreds, map[string]string{
				"Content-Type":         "application/x-www-form-urlencoded; charset=utf-8",
				awsiam.ChallengeHeader: base64.RawURLEncoding.EncodeToString(c),
			}, time.Now())
		}, wantErr: "does not name the server", preflight: true},
		{name: "X-Amz-Date 6 minutes old", skew: -6 * time.Minute, wantErr: "more than 5m0s", preflight: true},
		{name: "X-Amz-Date 6 minutes ahead", skew: 6 * time.Minute, wantErr: "more than 5m0s", preflight: true},
		{name: "X-Amz-Date malformed", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) { setHeader(sr, "X-Amz-Date", "yesterday") }, wantErr: "malformed", preflight: true},
		{name: "credential scope for another region", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			for i := range sr.Headers {
				if sr.Headers[i][0] == "Authorization" {
					sr.Headers[i][1] = strings.Replace(sr.Headers[i][1], "/us-east-1/", "/eu-west-1/", 1)
				}
			}
		}, wantErr: "is for region", preflight: true},
		{name: "Authorization not SigV4", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			setHeader(sr, "Authorization", "Basic Zm9vOmJhcg==")
		}, wantErr: "not a SigV4 header", preflight: true},
		{name: "forwarded header not signed", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			sr.Headers = append(sr.Headers, [2]string{"X-Amz-Content-Sha256", strings.Repeat("0", 64)})
		}, wantErr: "is not signed", preflight: true},
		{name: "content type not a form", tamper: func(_ *testing.T, sr *awsiam.SignedRequest, _ []byte) {
			setHeader(sr, "Content-Type", "application/json")
		}, wantErr: "not a form", preflight: true},
		{name: "signature by unknown credentials", creds: awsfake.Credentials{AccessKeyID: "ASIAUNKNOWNKEY000001", SecretAccessKey: "x", SessionToken: "y"}, wantErr: "STS answered 403 (\"InvalidClientTokenId\")"},
		{name: "signature with the wrong secret", creds: awsfake.Credentials{AccessKeyID: agentCreds.AccessKeyID, SecretAccessKey: "wrong", SessionToken: agentCreds.SessionToken}, wantErr: "STS answered 403 (\"SignatureDoesNotMatch\")"},
		{name: "STS answers 500", reply: reply(500, "<ErrorResponse><Error><Code>InternalFailure</Code></Error></ErrorResponse>"), wantErr: "STS answered 500 (\"InternalFailure\")"},
		{name: "STS redirects", reply: func(awsfake.Identity) (int, http.Header, string) {
			return http.StatusTemporaryRedirect, http.Header{"Location": {canaryURL + "/"}}, ""
		}, wantErr: "STS answered 307"},
		{name: "STS answer of the wrong shape", reply: reply(200, "<Foo><Arn>arn:aws:sts::"+account+":assumed-role/r/s</Arn></Foo>"), wantErr: "STS answer"},
		{name: "STS answer not XML", reply: reply(200, "{}"), wantErr: "STS answer"},
		{name: "STS answer with several results", reply: reply(200, xmlAnswer(result(taskRole.Arn, account), result("arn:aws:sts::"+account+":assumed-role/admin/x", account))), wantErr: "2 results"},
		{name: "STS answer with two ARNs", reply: reply(200, xmlAnswer("<GetCallerIdentityResult><Arn>"+taskRole.Arn+"</Arn><Arn>"+taskRole.Arn+"</Arn><Account>"+account+"</Account></GetCallerIdentityResult>")), wantErr: "exactly one Arn"},
		{name: "Account differs from ARN", reply: reply(200, xmlAnswer(result(taskRole.Arn, "210987654321"))), wantErr: "differs from its Arn"},
		{name: "IAM user, not an assumed role", reply: reply(200, xmlAnswer(result("arn:aws:iam::"+account+":user/alice", account))), wantErr: "is not an assumed role"},
		{name: "role not allow-listed", cfg: func(c *awsiam.ServerConfig) { c.RoleNames = []string{"other"} }, wantErr: `role "task-role" is not in the allow-list`},
		{name: "account not allow-listed", cfg: func(c *awsiam.ServerConfig) { c.AccountIDs = []string{"210987654321"} }, wantErr: "account 123456789012 is not in the allow-list"},
		{name: "session name not a SPIFFE segment", reply: reply(200, xmlAnswer(result("arn:aws:sts::"+account+":assumed-role/task-role/alice@example.com", account))), wantErr: "cannot be a SPIFFE path segment"},
		{name: "session name ..", reply: reply(200, xmlAnswer(result("arn:aws:sts::"+account+":assumed-role/task-role/..", account))), wantErr: "cannot be a SPIFFE path segment"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sts := awsfake.NewSTS(t, taskRole)
			sts.Reply = tc.reply
			cfg := awsiam.ServerConfig{AccountIDs: []string{account}, STSURLOverride: sts.URL}
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			v, err := awsiam.NewVerifier(cfg, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			creds := agentCreds
			if tc.creds.AccessKeyID != "" {
				creds = tc.creds
			}
			c, err := awsiam.NewCollector(awsiam.AgentConfig{TrustDomain: td, Region: "us-east-1"}, quietLog(),
				awsiam.WithCredentials(staticCreds(creds)),
				awsiam.WithCollectorClock(func() time.Time { return time.Now().Add(tc.skew) }))
			if err != nil {
				t.Fatal(err)
			}
			payload, err := c.Payload(context.Background(), attestors.CollectRequest{})
			if err != nil {
				t.Fatal(err)
			}
			before := canaryConns.Load()
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{
				Payload: payload, TrustDomain: td,
				Challenge: func(ctx context.Context, challenge []byte) ([]byte, error) {
					ans, err := c.Answer(ctx, challenge)
					if err != nil || tc.tamper == nil {
						return ans, err
					}
					var sr awsiam.SignedRequest
					if err := json.Unmarshal(ans, &sr); err != nil {
						t.Fatal(err)
					}
					tc.tamper(t, &sr, challenge)
					return json.Marshal(sr)
				},
			})
			if got := canaryConns.Load() - before; got != 0 {
				t.Errorf("canary saw %d connections", got)
			}
			if tc.preflight && sts.Conns.Load() != 0 {
				t.Errorf("STS saw %d connections for a request that must be refused before sending", sts.Conns.Load())
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				t.Logf("rejected: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := res.AgentID.String(), "spiffe://example.org/agent/aws_iam/"+account+"/task-role/"+session; got != want {
				t.Errorf("agent ID %s, want %s", got, want)
			}
			if !res.CanReattest || res.Evidence["arn"] != taskRole.Arn {
				t.Errorf("CanReattest %v, evidence %v", res.CanReattest, res.Evidence)
			}
			if sts.Accepted.Load() != 1 {
				t.Errorf("STS accepted %d requests", sts.Accepted.Load())
			}
			// The challenge reached STS inside the signed request.
			if h := sts.Headers()[0]; h.Get(awsiam.ChallengeHeader) == "" || !strings.Contains(h.Get("Authorization"), "x-hallmark-challenge") {
				t.Errorf("STS saw headers %v", h)
			}
		})
	}
}
