package awsfake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const maxBody = 64 << 10

func requestID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// IMDS is a strict IMDSv2 fake: a token from PUT /latest/api/token (with a
// TTL header) must accompany every GET; IMDSv1 requests get 401, and token
// requests carrying X-Forwarded-For get 403, as on EC2.
type IMDS struct {
	URL string
	// Files maps paths below /latest/ (e.g.
	// "dynamic/instance-identity/document") to their content.
	Files map[string]string

	TokenPuts atomic.Int64 // successful token requests
	Gets      atomic.Int64 // successful GETs
	Refused   atomic.Int64 // requests refused for missing or bad tokens

	mu     sync.Mutex
	tokens map[string]time.Time
}

// NewIMDS starts an IMDSv2 fake serving files; it stops with the test.
func NewIMDS(t testing.TB, files map[string]string) *IMDS {
	m := &IMDS{Files: files, tokens: map[string]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(srv.Close)
	m.URL = srv.URL
	return m
}

func (m *IMDS) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			http.Error(w, "", http.StatusMethodNotAllowed)
			return
		}
		if r.Header.Get("X-Forwarded-For") != "" {
			m.Refused.Add(1)
			http.Error(w, "", http.StatusForbidden)
			return
		}
		ttl, err := strconv.Atoi(r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds"))
		if err != nil || ttl < 1 || ttl > 21600 {
			m.Refused.Add(1)
			http.Error(w, "", http.StatusBadRequest)
			return
		}
		tok := requestID()
		m.mu.Lock()
		m.tokens[tok] = time.Now().Add(time.Duration(ttl) * time.Second)
		m.mu.Unlock()
		m.TokenPuts.Add(1)
		w.Header().Set("X-aws-ec2-metadata-token-ttl-seconds", strconv.Itoa(ttl))
		io.WriteString(w, tok)
		return
	}
	if r.Method != http.MethodGet {
		http.Error(w, "", http.StatusMethodNotAllowed)
		return
	}
	m.mu.Lock()
	exp, ok := m.tokens[r.Header.Get("X-aws-ec2-metadata-token")]
	m.mu.Unlock()
	if !ok || time.Now().After(exp) {
		m.Refused.Add(1)
		http.Error(w, "", http.StatusUnauthorized)
		return
	}
	body, ok := m.Files[strings.TrimPrefix(r.URL.Path, "/latest/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	m.Gets.Add(1)
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, body)
}

// Identity is a principal known to the STS fake.
type Identity struct {
	Credentials
	Arn     string
	Account string
	UserID  string
}

// STS is an STS fake that answers only correctly signed
// GetCallerIdentity requests.
type STS struct {
	URL string
	// Reply, when set, replaces the answer to a correctly signed request,
	// to test the handling of odd STS answers.
	Reply func(id Identity) (status int, header http.Header, body string)
	// Now is the fake's clock (default time.Now).
	Now func() time.Time

	Conns    atomic.Int64 // TCP connections accepted
	Accepted atomic.Int64 // requests answered with an identity

	mu    sync.Mutex
	ids   map[string]Identity
	heads []http.Header
}

// NewSTS starts an STS fake knowing ids; it stops with the test.
func NewSTS(t testing.TB, ids ...Identity) *STS {
	s := &STS{ids: map[string]Identity{}}
	for _, id := range ids {
		s.ids[id.AccessKeyID] = id
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.Conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Headers returns the headers of the requests received so far.
func (s *STS) Headers() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.heads...)
}

func stsError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>%s</Code>
    <Message>%s</Message>
  </Error>
  <RequestId>%s</RequestId>
</ErrorResponse>
`, xmlEscape(code), xmlEscape(msg), requestID())
}

func xmlEscape(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *STS) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.heads = append(s.heads, r.Header.Clone())
	s.mu.Unlock()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		stsError(w, http.StatusBadRequest, "InvalidRequest", "body")
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/" || r.URL.RawQuery != "" {
		stsError(w, http.StatusBadRequest, "InvalidAction", "want POST /")
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || len(form) != 2 || form.Get("Action") != "GetCallerIdentity" || form.Get("Version") != "2011-06-15" ||
		len(form["Action"]) != 1 || len(form["Version"]) != 1 {
		stsError(w, http.StatusBadRequest, "InvalidAction", "only GetCallerIdentity is served")
		return
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	s.mu.Lock()
	ids := s.ids
	s.mu.Unlock()
	creds := map[string]Credentials{}
	for k, v := range ids {
		creds[k] = v.Credentials
	}
	akid, err := VerifySigV4(r, body, "sts", creds, now())
	if err != nil {
		code, msg, _ := strings.Cut(err.Error(), ": ")
		stsError(w, http.StatusForbidden, code, msg)
		return
	}
	id := ids[akid]
	if s.Reply != nil {
		st, h, b := s.Reply(id)
		for k, v := range h {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Type", "text/xml")
		w.WriteHeader(st)
		io.WriteString(w, b)
		return
	}
	s.Accepted.Add(1)
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, CallerIdentityXML(id))
}

// CallerIdentityXML is STS's answer to GetCallerIdentity for id.
func CallerIdentityXML(id Identity) string {
	return fmt.Sprintf(`<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <GetCallerIdentityResult>
    <Arn>%s</Arn>
    <UserId>%s</UserId>
    <Account>%s</Account>
  </GetCallerIdentityResult>
  <ResponseMetadata>
    <RequestId>%s</RequestId>
  </ResponseMetadata>
</GetCallerIdentityResponse>
`, xmlEscape(id.Arn), xmlEscape(id.UserID), xmlEscape(id.Account), requestID())
}
