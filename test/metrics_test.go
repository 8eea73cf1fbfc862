package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc/metadata"

	"github.com/hallmarkid/hallmark/test/testenv"
)

// metricsOf scrapes addr's /metrics and returns every sample by
// `name{label="value",...}` (labels sorted; histograms as name_count and
// name_sum).
func metricsOf(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d %s", addr, resp.StatusCode, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", addr, err)
	}
	out := make(map[string]float64)
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
			}
			sort.Strings(ls)
			key := func(n string) string {
				if len(ls) == 0 {
					return n
				}
				return n + "{" + strings.Join(ls, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key(name)] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key(name)] = m.GetGauge().GetValue()
			case m.Histogram != nil:
				out[key(name+"_count")] = float64(m.GetHistogram().GetSampleCount())
				out[key(name+"_sum")] = m.GetHistogram().GetSampleSum()
			case m.Untyped != nil:
				out[key(name)] = m.GetUntyped().GetValue()
			}
		}
	}
	return out
}

// hasFamily reports whether any sample of family name (or its histogram
// parts) is present.
func hasFamily(ms map[string]float64, name string) bool {
	for k := range ms {
		base, _, _ := strings.Cut(k, "{")
		if base == name || base == name+"_count" || base == name+"_sum" {
			return true
		}
	}
	return false
}

func waitMetric(t *testing.T, addr, series, what string, ok func(float64) bool) {
	t.Helper()
	var last map[string]float64
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		last = metricsOf(t, addr)
		if v, found := last[series]; found && ok(v) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %s = %v (present %v)", what, series, last[series], hasFamily(last, strings.SplitN(series, "{", 2)[0]))
}

// Each daemon exports only its own series, and those it exports move:
// scraped from the real binaries.
func TestMetricsTellTheTruth(t *testing.T) {
	env := testenv.New(t)
	srvAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	agAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv := env.StartServer(testenv.WithHCL(`telemetry { listen_address = "` + srvAddr + `" }`))
	ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL(`telemetry { listen_address = "`+agAddr+`" }`))

	// The server has no agent SVID: a 0 expiry there fired the
	// documented "expires within 10 minutes" alert on every server.
	sm := metricsOf(t, srvAddr)
	for _, name := range []string{"hallmark_agent_svid_expiry_timestamp_seconds", "hallmark_agent_svid_rotations_total",
		"hallmark_sds_streams", "hallmark_workload_api_streams"} {
		if hasFamily(sm, name) {
			t.Errorf("server exports the agent's series %s", name)
		}
	}
	am := metricsOf(t, agAddr)
	for _, name := range []string{"hallmark_attestations_total", "hallmark_svid_issued_total", "hallmark_datastore_op_duration_seconds",
		"hallmark_audit_records_total", "hallmark_svid_issue_duration_seconds"} {
		if hasFamily(am, name) {
			t.Errorf("agent exports the server's series %s", name)
		}
	}
	exp := am["hallmark_agent_svid_expiry_timestamp_seconds"]
	if now := float64(time.Now().Unix()); exp < now {
		t.Errorf("agent SVID expiry %v is in the past (now %v)", exp, now)
	}

	// The agent's entries gauge follows the entries authorised for it.
	const want = "spiffe://example.org/metrics/w"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)
	waitMetric(t, agAddr, "hallmark_entries", "agent entries after one entry", func(v float64) bool { return v == 1 })

	// Datastore latency is recorded, by operation.
	sm = metricsOf(t, srvAddr)
	for _, op := range []string{"create_entries", "create_agent", "consume_join_token"} {
		if sm[`hallmark_datastore_op_duration_seconds_count{op="`+op+`"}`] < 1 {
			t.Errorf("datastore op %s not recorded", op)
		}
	}

	// SDS streams are counted while open.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sctx, closeStream := context.WithCancel(metadata.AppendToOutgoingContext(ctx, "workload.spiffe.io", "true"))
	s, err := sdsClient(t, ag.SocketPath).StreamSecrets(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatalf("SDS: %v", err)
	}
	waitMetric(t, agAddr, "hallmark_sds_streams", "open SDS stream", func(v float64) bool { return v == 1 })
	closeStream()
	waitMetric(t, agAddr, "hallmark_sds_streams", "closed SDS stream", func(v float64) bool { return v == 0 })

	// JWT-SVIDs are their own kind.
	waitForJWTSVID(t, ag.Addr(), want, "metrics-audience")
	sm = metricsOf(t, srvAddr)
	if sm[`hallmark_svid_issued_total{kind="jwt"}`] < 1 || sm[`hallmark_svid_issued_total{kind="other"}`] != 0 {
		t.Errorf("JWT-SVID counted as jwt=%v other=%v", sm[`hallmark_svid_issued_total{kind="jwt"}`], sm[`hallmark_svid_issued_total{kind="other"}`])
	}

	// A restarted agent that reuses its saved SVID still knows when it
	// expires.
	ag.Restart()
	am = metricsOf(t, agAddr)
	if got := am["hallmark_agent_svid_expiry_timestamp_seconds"]; got != exp {
		t.Errorf("after restart the agent SVID expiry is %v, want %v (the saved SVID's)", got, exp)
	}
}
