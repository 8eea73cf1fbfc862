package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hallmarkid/hallmark/test/testenv"
)

func readAudit(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("audit line is not JSON: %q: %v", sc.Text(), err)
		}
		out = append(out, rec)
	}
	return out
}

func find(recs []map[string]any, match map[string]any) map[string]any {
	for _, r := range recs {
		ok := true
		for k, v := range match {
			if fmt.Sprint(r[k]) != fmt.Sprint(v) {
				ok = false
				break
			}
		}
		if ok {
			return r
		}
	}
	return nil
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}

// Audit records of accepted and rejected attestations and of issuance,
// with their content, and metrics scraped from both running binaries.
func TestAuditLogAndMetrics(t *testing.T) {
	env := testenv.New(t)
	auditPath := filepath.Join(env.Dir, "audit.jsonl")
	srvMetrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	agMetrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv := env.StartServer(testenv.WithHCL(`
audit {
  path  = "` + auditPath + `"
  fsync = "always"
}
telemetry { listen_address = "` + srvMetrics + `" }`))
	tok := srv.Token()
	ag := env.StartAgent(srv, tok, testenv.WithAgentTopHCL(`telemetry { listen_address = "`+agMetrics+`" }`))
	const want = "spiffe://example.org/audited"
	entryID := srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	// A rejected attestation: a token that does not exist.
	c := nodeClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, _, err := attestWithToken(ctx, c, "00000000000000000000000000000000"); err == nil {
		t.Fatal("unknown token accepted")
	}

	var recs []map[string]any
	testenv.WaitFor(t, 5*time.Second, "audit records", func() bool {
		recs = readAudit(t, auditPath)
		return find(recs, map[string]any{"kind": "attestation", "result": "rejected"}) != nil &&
			find(recs, map[string]any{"kind": "issuance", "spiffe_id": want}) != nil
	})
	acc := find(recs, map[string]any{"kind": "attestation", "result": "accepted", "agent_id": ag.ID()})
	if acc == nil || acc["attestor"] != "join_token" || acc["request_id"] == "" || acc["time"] == nil ||
		!strings.Contains(fmt.Sprint(acc["selectors"]), "join_token:"+tok) || acc["serial"] == nil {
		t.Fatalf("accepted attestation record: %v", acc)
	}
	rej := find(recs, map[string]any{"kind": "attestation", "result": "rejected"})
	if !strings.Contains(fmt.Sprint(rej["reason"]), "invalid or expired join token") || rej["attestor"] != "join_token" {
		t.Fatalf("rejected attestation record: %v", rej)
	}
	iss := find(recs, map[string]any{"kind": "issuance", "spiffe_id": want})
	if iss["entry_id"] != entryID || iss["caller"] != ag.ID() || iss["serial"] == nil || iss["expires_at"] == nil {
		t.Fatalf("issuance record: %v", iss)
	}
	if find(recs, map[string]any{"kind": "admin", "action": "token_generate"}) == nil ||
		find(recs, map[string]any{"kind": "admin", "action": "entry_created", "entry_id": entryID}) == nil {
		t.Fatalf("admin changes not audited: %v", recs)
	}
	fi, err := os.Stat(auditPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("audit log mode: %v %v", fi.Mode(), err)
	}

	m := scrape(t, "http://"+srvMetrics+"/metrics")
	for _, series := range []string{
		`hallmark_attestations_total{attestor="join_token",result="accepted"} 1`,
		`hallmark_attestations_total{attestor="join_token",result="rejected"} 1`,
		`hallmark_svid_issued_total{kind="workload"}`,
		`hallmark_svid_issued_total{kind="agent"} 1`,
		`hallmark_svid_issue_duration_seconds_bucket`,
		`hallmark_entries 1`,
		`hallmark_propagation_lag_seconds_count`,
		`go_goroutines`,
	} {
		if !strings.Contains(m, series) {
			t.Errorf("server metrics lack %q", series)
		}
	}
	if got := scrape(t, "http://"+srvMetrics+"/ready"); got == "" {
		t.Error("server /ready empty")
	}
	scrape(t, "http://"+srvMetrics+"/live")

	am := scrape(t, "http://"+agMetrics+"/metrics")
	for _, series := range []string{`hallmark_workload_api_streams`, `hallmark_agent_svid_expiry_timestamp_seconds`} {
		if !strings.Contains(am, series) {
			t.Errorf("agent metrics lack %q", series)
		}
	}
	scrape(t, "http://"+agMetrics+"/ready")
}
