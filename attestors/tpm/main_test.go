package tpm_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	tpmatt "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/tpm/tpmtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	tpmtest.Cleanup()
	os.Exit(code)
}

var td = spiffeid.RequireTrustDomainFromString("example.org")

// node is a running swtpm with an agent-side collector on it.
type node struct {
	inst *tpmtest.Instance
	tmpl *tpmtest.Template
	col  *tpmatt.Collector
	dir  string
}

type nodeOpts struct {
	template string // shared template name, default "a"
	ca       string // CA name, default "a"
	akType   string
	ekType   string
	eventLog string // default "none"
}

func newNode(t testing.TB, o nodeOpts) *node {
	t.Helper()
	if o.template == "" {
		o.template = "a"
	}
	if o.ca == "" {
		o.ca = "a"
	}
	if o.eventLog == "" {
		o.eventLog = "none"
	}
	tmpl := tpmtest.Shared(t, o.template, tpmtest.SharedCA(t, o.ca))
	inst := tmpl.Start(t)
	dir := t.TempDir()
	col, err := tpmatt.NewCollector(tpmatt.AgentConfig{Device: inst.Device(), AKType: o.akType, EKType: o.ekType, EventLog: o.eventLog}, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { col.Close() })
	return &node{inst: inst, tmpl: tmpl, col: col, dir: dir}
}

// caDir writes the named shared CA into a directory.
func caDir(t testing.TB, name string) string {
	return tpmtest.SharedCA(t, name).WriteDir(t)
}

func newVerifier(t testing.TB, cfg tpmatt.ServerConfig) *tpmatt.Verifier {
	t.Helper()
	v, err := tpmatt.NewVerifier(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func agentKey(t testing.TB) crypto.PublicKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.Public()
}

// round describes one attestation, with hooks that tamper with the wire.
type round struct {
	key       crypto.PublicKey
	renewal   bool
	currentID spiffeid.ID
	payload   func(p *tpmatt.Payload)
	answer    func(t testing.TB, ch *tpmatt.Challenge, a *tpmatt.Answer)
	challenge attestors.ChallengeFunc // replaces the collector entirely
}

func attest(t testing.TB, v *tpmatt.Verifier, n *node, r round) (attestors.Result, error) {
	t.Helper()
	ctx := context.Background()
	if r.key == nil {
		r.key = agentKey(t)
	}
	raw, err := n.col.Payload(ctx, attestors.CollectRequest{AgentKey: r.key, Renewal: r.renewal})
	if err != nil {
		t.Fatal(err)
	}
	if r.payload != nil {
		p, err := tpmatt.DecodePayload(raw)
		if err != nil {
			t.Fatal(err)
		}
		r.payload(p)
		if raw, err = tpmatt.Marshal(p); err != nil {
			t.Fatal(err)
		}
	}
	chf := r.challenge
	if chf == nil {
		chf = func(ctx context.Context, c []byte) ([]byte, error) {
			ans, err := n.col.Answer(ctx, c)
			if err != nil || r.answer == nil {
				return ans, err
			}
			ch, err := tpmatt.DecodeChallenge(c)
			if err != nil {
				t.Fatal(err)
			}
			a, err := tpmatt.DecodeAnswer(ans)
			if err != nil {
				t.Fatal(err)
			}
			r.answer(t, ch, a)
			return tpmatt.Marshal(a)
		}
	}
	return v.Verify(ctx, attestors.VerifyRequest{
		Payload: raw, Challenge: chf, AgentKey: r.key, TrustDomain: td, Renewal: r.renewal, CurrentID: r.currentID,
	})
}

func checkErr(t testing.TB, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("no error, want %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("error %q, want %q", err, wantErr)
	}
}

// syntheticLog builds a crypto-agile event log (Spec ID Event03 header and
// TCG_PCR_EVENT2 records, SHA-256 only) of events measured into pcr.
func syntheticLog(pcr int, events ...[]byte) []byte {
	var b bytes.Buffer
	le := func(v any) { binary.Write(&b, binary.LittleEndian, v) }
	var spec bytes.Buffer
	spec.WriteString("Spec ID Event03\x00")
	binary.Write(&spec, binary.LittleEndian, uint32(0))             // platform class
	spec.Write([]byte{0, 2, 0, 2})                                  // minor, major, errata, uintn size
	binary.Write(&spec, binary.LittleEndian, uint32(1))             // algorithms
	binary.Write(&spec, binary.LittleEndian, [2]uint16{0x000b, 32}) // sha256
	spec.WriteByte(0)                                               // vendor info
	le(uint32(0))
	le(uint32(3)) // EV_NO_ACTION
	b.Write(make([]byte, 20))
	le(uint32(spec.Len()))
	b.Write(spec.Bytes())
	for _, e := range events {
		d := sha256.Sum256(e)
		le(uint32(pcr))
		le(uint32(0x0d)) // EV_IPL
		le(uint32(1))
		le(uint16(0x000b))
		b.Write(d[:])
		le(uint32(len(e)))
		b.Write(e)
	}
	return b.Bytes()
}

// measure resets pcr and extends the events' SHA-256 digests into it.
func measure(t testing.TB, n *node, pcr int, events ...[]byte) {
	t.Helper()
	dev := n.col.Device()
	if err := dev.ResetPCR(pcr); err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		d := sha256.Sum256(e)
		if err := dev.ExtendPCR(pcr, "sha256", d[:]); err != nil {
			t.Fatal(err)
		}
	}
}

func writeFile(t testing.TB, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
