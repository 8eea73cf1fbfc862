package bundlepub_test

import (
	"encoding/json"
	"testing"

	"github.com/hallmarkid/hallmark/server/bundlepub"
)

// FuzzDecodeConfigMap feeds arbitrary API server answers to the ConfigMap
// decoder: no panic; an accepted answer has a resourceVersion, and the
// value it reports is what the JSON holds under the key.
func FuzzDecodeConfigMap(f *testing.F) {
	f.Add([]byte(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"hallmark-bundle","namespace":"hallmark","resourceVersion":"42"},"data":{"bundle.pem":"-----BEGIN CERTIFICATE-----\n"}}`), "bundle.pem")
	f.Add([]byte(`{"metadata":{"resourceVersion":"1"}}`), "bundle.pem")
	f.Add([]byte(`{"metadata":{},"data":{"k":"v"}}`), "k")
	f.Add([]byte(`{"kind":"Status","status":"Failure","code":403}`), "k")
	f.Add([]byte(`{"data":{"k":1}}`), "k")
	f.Add([]byte(`null`), "")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		value, has, rv, err := bundlepub.DecodeConfigMap(body, key)
		if err != nil {
			return
		}
		if rv == "" {
			t.Fatal("accepted an answer without resourceVersion")
		}
		var raw struct {
			Data map[string]string `json:"data"`
		}
		if json.Unmarshal(body, &raw) == nil {
			if v, ok := raw.Data[key]; ok != has || v != value {
				t.Fatalf("value %q/%v, JSON holds %q/%v", value, has, v, ok)
			}
		}
	})
}
