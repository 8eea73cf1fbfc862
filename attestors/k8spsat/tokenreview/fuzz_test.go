package tokenreview

import (
	"encoding/json"
	"reflect"
	"testing"

	authv1 "k8s.io/api/authentication/v1"

	"github.com/hallmarkid/hallmark/attestors/k8spsat"
)

// FuzzDecodeReview feeds arbitrary API server answers to the decoder: no
// panic, and what it returns survives a round trip through the API type.
func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(`{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"t","audiences":["spiffe://example.org/hallmark/server"]},` +
		`"status":{"authenticated":true,"audiences":["spiffe://example.org/hallmark/server"],"user":{"username":"system:serviceaccount:hallmark:agent",` +
		`"uid":"5a5a","groups":["system:serviceaccounts"],"extra":{"authentication.kubernetes.io/pod-uid":["0f0e"],` +
		`"authentication.kubernetes.io/pod-name":["p"]}}}}`))
	f.Add([]byte(`{"status":{"authenticated":false,"error":"invalid bearer token"}}`))
	f.Add([]byte(`{"status":{"user":{"extra":{"k":null,"j":[]}}}}`))
	f.Add([]byte(`{"status":{"authenticated":"yes"}}`))
	f.Add([]byte(`{"kind":"Status","status":"Failure"}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeReview(data)
		if err != nil {
			return
		}
		extra := map[string]authv1.ExtraValue{}
		for k, v := range r.Extra {
			extra[k] = v
		}
		if len(extra) == 0 {
			extra = nil
		}
		b, err := json.Marshal(&authv1.TokenReview{Status: authv1.TokenReviewStatus{
			Authenticated: r.Authenticated, Audiences: r.Audiences, Error: r.Error,
			User: authv1.UserInfo{Username: r.Username, UID: r.UID, Groups: r.Groups, Extra: extra},
		}})
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeReview(b)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if !reviewsEqual(r, r2) {
			t.Fatalf("round trip: %+v != %+v", r, r2)
		}
	})
}

// reviewsEqual compares reviews, treating nil and empty slices and maps
// alike.
func reviewsEqual(a, b k8spsat.Review) bool {
	norm := func(r k8spsat.Review) k8spsat.Review {
		if len(r.Groups) == 0 {
			r.Groups = nil
		}
		if len(r.Audiences) == 0 {
			r.Audiences = nil
		}
		extra := map[string][]string{}
		for k, v := range r.Extra {
			if len(v) == 0 {
				v = nil
			}
			extra[k] = v
		}
		r.Extra = extra
		return r
	}
	return reflect.DeepEqual(norm(a), norm(b))
}
