package server

import (
	"testing"

	"github.com/hallmarkid/hallmark/server/admission"
	"github.com/hallmarkid/hallmark/server/config"
)

// The configuration's defaults are the gate's: config cannot import the
// gate, so they are written twice and compared here.
func TestNodeAPILimitDefaultsMatch(t *testing.T) {
	if got, want := gateLimits(config.DefaultNodeAPILimits()), admission.DefaultLimits(); got != want {
		t.Fatalf("config defaults %+v\ngate defaults   %+v", got, want)
	}
	if config.MinUnauthMessageSize != admission.MinMaxMessageSize || config.MaxUnauthMessageSize != admission.AuthenticatedMaxMessageSize {
		t.Fatal("message size bounds differ between config and admission")
	}
}
