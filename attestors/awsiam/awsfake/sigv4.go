// Package awsfake holds strict loopback fakes of the AWS endpoints the AWS
// attestors talk to — IMDSv2, STS GetCallerIdentity and EC2
// DescribeInstances — and of the SSM Parameter Store the server publishes
// its trust bundle to, for tests. The STS, EC2 and SSM fakes check the
// SigV4 signature of every request with an independent implementation and
// answer only correctly signed ones, in the shapes AWS uses.
//
// It is test support: production code must not import it, and it must not
// import server/, agent/ or any attestor.
package awsfake

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Credentials are a test principal's keys.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
}

const amzDateLayout = "20060102T150405Z"

// VerifySigV4 checks the AWS Signature Version 4 header signature of r with
// body for service, looking the access key up in creds. It returns the
// access key ID on success.
func VerifySigV4(r *http.Request, body []byte, service string, creds map[string]Credentials, now time.Time) (string, error) {
	authz := r.Header.Values("Authorization")
	if len(authz) != 1 {
		return "", errors.New("MissingAuthenticationToken: want one Authorization header")
	}
	const algo = "AWS4-HMAC-SHA256 "
	if !strings.HasPrefix(authz[0], algo) {
		return "", errors.New("IncompleteSignature: unsupported algorithm")
	}
	var credential, signedHeaders, signature string
	for _, part := range strings.Split(strings.TrimPrefix(authz[0], algo), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return "", errors.New("IncompleteSignature: malformed Authorization")
		}
		switch k {
		case "Credential":
			credential = v
		case "SignedHeaders":
			signedHeaders = v
		case "Signature":
			signature = v
		default:
			return "", fmt.Errorf("IncompleteSignature: unknown field %q", k)
		}
	}
	scope := strings.Split(credential, "/")
	if len(scope) != 5 || scope[3] != service || scope[4] != "aws4_request" {
		return "", fmt.Errorf("IncompleteSignature: bad credential scope %q", credential)
	}
	c, ok := creds[scope[0]]
	if !ok {
		return "", errors.New("InvalidClientTokenId: unknown access key")
	}
	dates := r.Header.Values("X-Amz-Date")
	if len(dates) != 1 {
		return "", errors.New("IncompleteSignature: want one X-Amz-Date")
	}
	t, err := time.Parse(amzDateLayout, dates[0])
	if err != nil || t.Format("20060102") != scope[1] {
		return "", errors.New("IncompleteSignature: bad X-Amz-Date")
	}
	if d := now.Sub(t); d > 15*time.Minute || d < -15*time.Minute {
		return "", errors.New("SignatureDoesNotMatch: Signature expired")
	}
	if c.SessionToken != "" && r.Header.Get("X-Amz-Security-Token") != c.SessionToken {
		return "", errors.New("InvalidClientTokenId: bad security token")
	}

	names := strings.Split(signedHeaders, ";")
	if !sort.StringsAreSorted(names) {
		return "", errors.New("SignatureDoesNotMatch: SignedHeaders not sorted")
	}
	hasHost := false
	var canonHeaders strings.Builder
	for _, n := range names {
		if n != strings.ToLower(n) || n == "" {
			return "", errors.New("SignatureDoesNotMatch: bad SignedHeaders")
		}
		var vals []string
		switch n {
		case "host":
			hasHost = true
			vals = []string{r.Host}
		case "content-length":
			vals = []string{strconv.FormatInt(r.ContentLength, 10)}
		default:
			vals = r.Header.Values(n)
		}
		if len(vals) == 0 {
			return "", fmt.Errorf("SignatureDoesNotMatch: signed header %q missing", n)
		}
		for i := range vals {
			vals[i] = strings.Join(strings.Fields(vals[i]), " ")
		}
		canonHeaders.WriteString(n + ":" + strings.Join(vals, ",") + "\n")
	}
	if !hasHost {
		return "", errors.New("SignatureDoesNotMatch: host not signed")
	}
	sum := sha256.Sum256(body)
	payloadHash := hex.EncodeToString(sum[:])
	if h := r.Header.Get("X-Amz-Content-Sha256"); h != "" && h != payloadHash {
		return "", errors.New("XAmzContentSHA256Mismatch")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	canonReq := strings.Join([]string{
		r.Method, path, canonicalQuery(r.URL.Query()), canonHeaders.String(), signedHeaders, payloadHash,
	}, "\n")
	crSum := sha256.Sum256([]byte(canonReq))
	stringToSign := strings.Join([]string{
		"AWS4-HMAC-SHA256", dates[0], strings.Join(scope[1:], "/"), hex.EncodeToString(crSum[:]),
	}, "\n")
	key := hmacSHA256([]byte("AWS4"+c.SecretAccessKey), scope[1])
	key = hmacSHA256(key, scope[2])
	key = hmacSHA256(key, scope[3])
	key = hmacSHA256(key, "aws4_request")
	want := hex.EncodeToString(hmacSHA256(key, stringToSign))
	if !hmac.Equal([]byte(want), []byte(signature)) {
		return "", errors.New("SignatureDoesNotMatch: The request signature we calculated does not match the signature you provided")
	}
	return scope[0], nil
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, uriEncode(k)+"="+uriEncode(v))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

func uriEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
