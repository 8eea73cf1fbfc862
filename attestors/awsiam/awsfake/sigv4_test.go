package awsfake_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
)

var example = map[string]awsfake.Credentials{
	"AKIDEXAMPLE": {AccessKeyID: "AKIDEXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
}

// TestVerifySigV4Vanilla checks the verifier against the "get-vanilla"
// case of AWS's published SigV4 test suite.
func TestVerifySigV4Vanilla(t *testing.T) {
	r, _ := http.NewRequest(http.MethodGet, "http://example.amazonaws.com/", nil)
	r.Host = "example.amazonaws.com"
	r.Header.Set("X-Amz-Date", "20150830T123600Z")
	r.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31")
	now := time.Date(2015, 8, 30, 12, 36, 0, 0, time.UTC)
	if _, err := awsfake.VerifySigV4(r, nil, "service", example, now); err != nil {
		t.Fatal(err)
	}
	r.Header.Set("X-Amz-Date", "20150830T123601Z")
	if _, err := awsfake.VerifySigV4(r, nil, "service", example, now); err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("altered date: %v", err)
	}
}

// TestVerifySigV4SDK cross-checks with the SDK's signer.
func TestVerifySigV4SDK(t *testing.T) {
	body := "Action=GetCallerIdentity&Version=2011-06-15"
	now := time.Now().UTC()
	sign := func() *http.Request {
		r, _ := http.NewRequest(http.MethodPost, "https://sts.us-east-1.amazonaws.com/", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
		r.Header.Set("X-Extra", "a   b")
		sum := sha256.Sum256([]byte(body))
		c := example["AKIDEXAMPLE"]
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey},
			r, hex.EncodeToString(sum[:]), "sts", "us-east-1", now); err != nil {
			t.Fatal(err)
		}
		return r
	}
	tests := []struct {
		name    string
		mod     func(r *http.Request) []byte
		wantErr string
	}{
		{name: "as signed", mod: func(*http.Request) []byte { return []byte(body) }},
		{name: "body changed", mod: func(*http.Request) []byte { return []byte(body + "&x=1") }, wantErr: "SignatureDoesNotMatch"},
		{name: "signed header changed", mod: func(r *http.Request) []byte { r.Header.Set("X-Extra", "c"); return []byte(body) }, wantErr: "SignatureDoesNotMatch"},
		{name: "host changed", mod: func(r *http.Request) []byte { r.Host = "sts.eu-west-1.amazonaws.com"; return []byte(body) }, wantErr: "SignatureDoesNotMatch"},
		{name: "wrong service", mod: func(r *http.Request) []byte {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), "/sts/", "/ec2/", 1))
			return []byte(body)
		}, wantErr: "credential scope"},
		{name: "no authorization", mod: func(r *http.Request) []byte { r.Header.Del("Authorization"); return []byte(body) }, wantErr: "MissingAuthenticationToken"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := sign()
			r.Host = r.URL.Host
			b := tc.mod(r)
			r.ContentLength = int64(len(b))
			_, err := awsfake.VerifySigV4(r, b, "sts", example, now)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}
