package postgres

import (
	"strings"
	"testing"
)

func TestKVKeyOf(t *testing.T) {
	for _, tt := range []struct {
		name, payload, want string
	}{
		{"key", "=ca/x509_authorities", "ca/x509_authorities"},
		{"key with an equals sign", "==a=b", "=a=b"},
		{"empty key", "=", ""},
		{"too long to name", "*", ""},
		{"reconnection", "", ""},
		{"no prefix", "ca/x509_authorities", ""},
		{"longer than announced keys", "=" + strings.Repeat("k", maxNotifiedKey+1), ""},
		{"longest announced key", "=" + strings.Repeat("k", maxNotifiedKey), strings.Repeat("k", maxNotifiedKey)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := kvKeyOf(tt.payload); got != tt.want {
				t.Errorf("kvKeyOf(%q) = %q, want %q", tt.payload, got, tt.want)
			}
		})
	}
}

// FuzzKVKeyOf: any payload (anyone who may NOTIFY can send one) gives
// either "" (re-read everything) or exactly the key after "=", never a
// panic, never a key longer than announced keys are.
func FuzzKVKeyOf(f *testing.F) {
	for _, s := range []string{"", "*", "=", "=ca/x509_authorities", "==", "jwt/keys", "=federation/static/a\x00b", "=\xff\xfe"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		key := kvKeyOf(payload)
		if key == "" {
			return
		}
		if "="+key != payload || len(key) > maxNotifiedKey {
			t.Fatalf("kvKeyOf(%q) = %q", payload, key)
		}
	})
}
