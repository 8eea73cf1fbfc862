package bootstrap_test

import (
	"testing"

	"github.com/hallmarkid/hallmark/agent/bootstrap"
)

// FuzzParse feeds arbitrary bootstrap bundles (a file or a download the
// operator points the agent at) in both formats: no panic, and whatever is
// accepted is a non-empty list of CA certificates.
func FuzzParse(f *testing.F) {
	ca := cert(f, true)
	f.Add(pemOf(ca), "pem")
	f.Add(spiffeOf(f, ca), "spiffe")
	f.Add([]byte(`{"keys":[{"use":"x509-svid","kty":"EC","crv":"P-256","x5c":["AAAA"]}]}`), "spiffe")
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "pem")
	f.Add([]byte(`null`), "spiffe")
	f.Fuzz(func(t *testing.T, data []byte, format string) {
		certs, err := bootstrap.Parse(td, data, format)
		if err != nil {
			return
		}
		if len(certs) == 0 {
			t.Fatal("accepted an empty bundle")
		}
		for _, c := range certs {
			if !c.IsCA {
				t.Fatal("accepted a non-CA certificate")
			}
		}
	})
}
