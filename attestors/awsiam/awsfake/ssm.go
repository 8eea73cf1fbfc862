package awsfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// SSMVersion is one value a parameter held, and when it was written.
type SSMVersion struct {
	Value string
	At    time.Time
}

// SSM is a Systems Manager Parameter Store fake serving only correctly
// signed (SigV4, service "ssm", its region) PutParameter and GetParameter
// calls in the AWS JSON 1.1 protocol, and only for the parameter names it
// was told about (others answer AccessDeniedException, as an IAM policy
// scoped to one parameter would). PutParameter must give the parameter's
// type; overwriting an existing parameter requires Overwrite = true; a
// Standard-tier value is at most 4096 bytes.
type SSM struct {
	URL      string
	Region   string
	Requests atomic.Int64
	Puts     atomic.Int64

	mu      sync.Mutex
	creds   map[string]Credentials
	allowed map[string]string // parameter name -> type
	history map[string][]SSMVersion
	errs    []string
}

// NewSSM starts an SSM fake in region that accepts creds and allows the
// parameters named in params (name -> type: "String" or "SecureString");
// it stops with the test.
func NewSSM(t testing.TB, region string, creds Credentials, params map[string]string) *SSM {
	s := &SSM{Region: region, creds: map[string]Credentials{creds.AccessKeyID: creds}, allowed: params,
		history: map[string][]SSMVersion{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Value returns the parameter's current value.
func (s *SSM) Value(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[name]
	if len(h) == 0 {
		return "", false
	}
	return h[len(h)-1].Value, true
}

// History returns every value written to the parameter, oldest first.
func (s *SSM) History(name string) []SSMVersion {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SSMVersion(nil), s.history[name]...)
}

// Errors returns the error answers given so far ("Code: message").
func (s *SSM) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

func (s *SSM) fail(w http.ResponseWriter, status int, code, msg string) {
	s.mu.Lock()
	s.errs = append(s.errs, code+": "+msg)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-Requestid", requestID())
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

func (s *SSM) serve(w http.ResponseWriter, r *http.Request) {
	s.Requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody || r.Method != http.MethodPost || r.URL.Path != "/" {
		s.fail(w, http.StatusBadRequest, "InvalidRequest", "want POST / with a body of at most 64 KiB")
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/x-amz-json-1.1" {
		s.fail(w, http.StatusBadRequest, "InvalidRequest", fmt.Sprintf("Content-Type %q, want application/x-amz-json-1.1", ct))
		return
	}
	s.mu.Lock()
	creds := s.creds
	s.mu.Unlock()
	if _, err := VerifySigV4(r, body, "ssm", creds, time.Now()); err != nil {
		code, msg, _ := strings.Cut(err.Error(), ": ")
		s.fail(w, http.StatusForbidden, code, msg)
		return
	}
	if scope := credentialScope(r); len(scope) != 5 || scope[2] != s.Region {
		s.fail(w, http.StatusForbidden, "SignatureDoesNotMatch", fmt.Sprintf("credential scope is not for region %s", s.Region))
		return
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	switch target := r.Header.Get("X-Amz-Target"); target {
	case "AmazonSSM.PutParameter":
		var in struct {
			Name, Value, Type, Tier, DataType, Description string
			Overwrite                                      *bool
		}
		if err := dec.Decode(&in); err != nil {
			s.fail(w, http.StatusBadRequest, "ValidationException", err.Error())
			return
		}
		s.put(w, in.Name, in.Value, in.Type, in.Tier, in.Overwrite != nil && *in.Overwrite)
	case "AmazonSSM.GetParameter":
		var in struct {
			Name           string
			WithDecryption *bool
		}
		if err := dec.Decode(&in); err != nil {
			s.fail(w, http.StatusBadRequest, "ValidationException", err.Error())
			return
		}
		s.get(w, in.Name)
	default:
		s.fail(w, http.StatusBadRequest, "UnknownOperationException", fmt.Sprintf("X-Amz-Target %q is not served", target))
	}
}

func credentialScope(r *http.Request) []string {
	for _, part := range strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 "), ",") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), "Credential="); ok {
			return strings.Split(v, "/")
		}
	}
	return nil
}

func (s *SSM) put(w http.ResponseWriter, name, value, typ, tier string, overwrite bool) {
	s.mu.Lock()
	want, ok := s.allowed[name]
	exists := len(s.history[name]) > 0
	s.mu.Unlock()
	switch {
	case !ok:
		s.fail(w, http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf("not authorized to perform ssm:PutParameter on parameter %s", name))
	case typ != want:
		s.fail(w, http.StatusBadRequest, "ValidationException", fmt.Sprintf("Type %q, the parameter is %q", typ, want))
	case tier != "" && tier != "Standard" && tier != "Advanced" && tier != "Intelligent-Tiering":
		s.fail(w, http.StatusBadRequest, "ValidationException", fmt.Sprintf("Tier %q", tier))
	case value == "":
		s.fail(w, http.StatusBadRequest, "ValidationException", "Value must not be empty")
	case (tier == "" || tier == "Standard") && len(value) > 4096:
		s.fail(w, http.StatusBadRequest, "ValidationException", "Standard parameters hold at most 4096 bytes")
	case exists && !overwrite:
		s.fail(w, http.StatusBadRequest, "ParameterAlreadyExists", "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.")
	default:
		s.mu.Lock()
		s.history[name] = append(s.history[name], SSMVersion{Value: value, At: time.Now()})
		version := len(s.history[name])
		s.mu.Unlock()
		s.Puts.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		fmt.Fprintf(w, `{"Tier":"Standard","Version":%d}`, version)
	}
}

func (s *SSM) get(w http.ResponseWriter, name string) {
	s.mu.Lock()
	typ, ok := s.allowed[name]
	h := s.history[name]
	s.mu.Unlock()
	switch {
	case !ok:
		s.fail(w, http.StatusBadRequest, "AccessDeniedException", fmt.Sprintf("not authorized to perform ssm:GetParameter on parameter %s", name))
	case len(h) == 0:
		s.fail(w, http.StatusBadRequest, "ParameterNotFound", "")
	default:
		v := h[len(h)-1]
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_ = json.NewEncoder(w).Encode(map[string]any{"Parameter": map[string]any{
			"Name": name, "Type": typ, "Value": v.Value, "Version": len(h), "DataType": "text",
			"LastModifiedDate": float64(v.At.UnixMilli()) / 1000,
			"ARN":              fmt.Sprintf("arn:aws:ssm:%s:111122223333:parameter/%s", s.Region, strings.TrimPrefix(name, "/")),
		}})
	}
}
