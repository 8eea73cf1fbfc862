package server

import (
	"log/slog"
	"testing"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// TestNodeVerifierTable: kinds are unique, the table builds what it names,
// and an unknown kind is refused with the same message as before the
// table.
func TestNodeVerifierTable(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	seen := map[string]bool{}
	for _, v := range nodeVerifiers {
		if seen[v.kind] {
			t.Errorf("kind %q twice in the table", v.kind)
		}
		seen[v.kind] = true
	}
	if _, err := s.verifier(hclconf.Block{Kind: "join_token"}); err != nil {
		t.Errorf("join_token: %v", err)
	}
	_, err := s.verifier(hclconf.Block{Kind: "sshpop"})
	const want = "unknown node attestor kind (known: join_token, tpm, aws_iid, aws_nitro, aws_iam, k8s_psat)"
	if err == nil || err.Error() != want {
		t.Errorf("unknown kind: err = %v, want %q", err, want)
	}
}
