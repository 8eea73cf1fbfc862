package jwtsigner_test

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/server/jwtsigner"
)

// formatFixture is a state document written by the signer before the
// rotation engine moved to server/authority (four keys: active, prepared,
// a tainted old one and an old one; one revoked), and a time it is valid
// at.
const formatFixture = "testdata/jwt-state-format1.json"

var formatNow = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func readFixture(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(formatFixture)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestStateFormat1Loads checks that a data directory written by earlier
// versions loads with the same keys and roles.
func TestStateFormat1Loads(t *testing.T) {
	data := readFixture(t)
	dir := filepath.Join(t.TempDir(), "jwt")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, jwtsigner.StateFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	clk := &fakeClock{now: formatNow}
	s := rotating(t, dir, clk, nil)
	want := map[string]string{
		"MIUeE8CtkvrU1msiQqaYed6rt-brlw_py4dQmbcFFck": "active",
		"oEpwVSGDRBIPkL60yNTUrXEH7XxyBz36wwEC76697m0": "prepared",
		"mFqji44ugo7jLg3BMcqtXuZGU6Cjfg0pM07eV4iS9Vc": "old:tainted",
		"0IAWimyc5V0HWWa_UYGqJxg1bycO1XZIJa6PPMucT-U": "old",
	}
	if got := keyStatuses(s); !sameStatuses(got, want) {
		t.Fatalf("statuses = %v, want %v", got, want)
	}
	if n := len(s.JWTAuthorities()); n != 4 {
		t.Fatalf("JWT bundle has %d keys, want 4", n)
	}
	if _, err := s.RevokeKey(t.Context(), "q2KtPiDq2Bi_J0h7Id1yNTfZd30V1q59JKA_co1EEHc"); err == nil {
		t.Fatal("revoking the key the fixture lists as revoked succeeded")
	}
}

// TestStateFormat1RoundTrips checks that adopting a shared state written
// by earlier versions writes it back byte for byte, so servers of both
// versions can share one datastore.
func TestStateFormat1RoundTrips(t *testing.T) {
	data := readFixture(t)
	kv := newMemKV()
	kv.Set(jwtsigner.SharedStateKey, data)
	dir := filepath.Join(t.TempDir(), "jwt")
	rotating(t, dir, &fakeClock{now: formatNow}, kv)
	got, err := os.ReadFile(filepath.Join(dir, jwtsigner.StateFileName))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("local copy of the adopted state differs from the shared one:\n%s", got)
	}
	if kv.Writes() != 0 {
		t.Fatalf("%d shared writes, want none", kv.Writes())
	}
}
