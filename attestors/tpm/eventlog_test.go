package tpm_test

import (
	"bytes"
	"crypto"
	_ "crypto/sha1"
	"os"
	"path/filepath"
	"testing"

	goattest "github.com/google/go-attestation/attest"

	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
)

// replayValues computes the PCR values a log claims, by extending its
// event digests (the test's own, independent replay).
func replayValues(t *testing.T, log []byte, alg goattest.HashAlg, h crypto.Hash) map[int][]byte {
	t.Helper()
	el, err := goattest.ParseEventLog(log)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int][]byte{}
	for _, e := range el.Events(alg) {
		if e.Type == 3 { // EV_NO_ACTION
			continue
		}
		cur, ok := out[e.Index]
		if !ok {
			cur = make([]byte, h.Size())
		}
		d := h.New()
		d.Write(cur)
		d.Write(e.Digest)
		out[e.Index] = d.Sum(nil)
	}
	return out
}

func TestRealEventLogs(t *testing.T) {
	for _, tc := range []struct {
		file       string
		wantSB     string // "enabled", "disabled" or "" for unknown
		checkState bool
	}{
		{file: "ubuntu_2104_shielded_vm_no_secure_boot_eventlog", wantSB: "disabled", checkState: true},
		{file: "coreos_36_shielded_vm_no_secure_boot_eventlog", wantSB: "disabled", checkState: true},
		{file: "crypto_agile_eventlog"},
		{file: "sb_cert_eventlog"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			log, err := os.ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			pcrs := replayValues(t, log, goattest.HashSHA256, crypto.SHA256)
			if len(pcrs) == 0 {
				t.Fatal("no SHA-256 events")
			}
			sb, err := tpmatt.ReplayEventLog(log, crypto.SHA256, pcrs)
			checkErr(t, err, "")
			got := ""
			if sb != nil {
				got = map[bool]string{true: "enabled", false: "disabled"}[*sb]
			}
			t.Logf("%s: %d PCRs, secure boot %q", tc.file, len(pcrs), got)
			if tc.checkState && got != tc.wantSB {
				t.Fatalf("secure boot %q, want %q", got, tc.wantSB)
			}

			// Any quoted PCR altered: the log no longer replays.
			for i := range pcrs {
				bad := map[int][]byte{}
				for k, v := range pcrs {
					bad[k] = v
				}
				bad[i] = bytes.Repeat([]byte{0xee}, 32)
				_, err := tpmatt.ReplayEventLog(log, crypto.SHA256, bad)
				checkErr(t, err, "does not replay to the quoted PCRs")
				break
			}
			// PCRs that are not quoted are never checked or trusted.
			_, err = tpmatt.ReplayEventLog(log, crypto.SHA256, map[int][]byte{23: make([]byte, 32)})
			checkErr(t, err, "")
		})
	}
}

func TestEventLogBounds(t *testing.T) {
	good := syntheticLog(16, []byte("a"))
	for _, tc := range []struct {
		name    string
		log     []byte
		wantErr string
	}{
		{name: "empty", log: nil, wantErr: "parse"},
		{name: "truncated", log: good[:len(good)-3], wantErr: "parse"},
		{name: "huge size field", log: append(good[:len(good)-5:len(good)-5], 0xff, 0xff, 0xff, 0x7f, 'a'), wantErr: "parse"},
		{name: "oversized", log: make([]byte, tpmatt.MaxEventLogSize+1), wantErr: "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tpmatt.ReplayEventLog(tc.log, crypto.SHA256, map[int][]byte{16: make([]byte, 32)})
			checkErr(t, err, tc.wantErr)
		})
	}
}

// TestSyntheticEventLogOnSwtpm measures events into PCR 16 of a swtpm and
// sends the matching crypto-agile log: it replays; a log that claims other
// events does not.
func TestSyntheticEventLogOnSwtpm(t *testing.T) {
	events := [][]byte{[]byte("bootloader"), []byte("kernel"), []byte("initrd")}
	good := writeFile(t, syntheticLog(16, events...))
	bad := writeFile(t, syntheticLog(16, events[0], []byte("evil kernel"), events[2]))
	for _, tc := range []struct {
		name, log, wantErr string
	}{
		{name: "replays", log: good},
		{name: "does not replay", log: bad, wantErr: "does not replay to the quoted PCRs [16]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := newNode(t, nodeOpts{eventLog: tc.log})
			measure(t, n, 16, events...)
			v := newVerifier(t, tpmatt.ServerConfig{EKCADir: caDir(t, "a"), PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7, 16}, RequireEventLog: true})
			_, err := attest(t, v, n, round{})
			checkErr(t, err, tc.wantErr)
		})
	}
}
