package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
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

// The series a SPIRE or Istio operator looks for, scraped from the real
// binaries: build info, CA and JWT key expiry, attested agents, Node API
// refusals, per-RPC latency, SDS pushes and NACKs, the agent's cache and
// workload SVID rotations.
func TestOperatorMetrics(t *testing.T) {
	env := testenv.New(t)
	srvAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	agAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv := env.StartServer(testenv.WithHCL(`telemetry { listen_address = "` + srvAddr + `" }`))
	ag := env.StartAgent(srv, srv.Token(), testenv.WithAgentTopHCL(`telemetry { listen_address = "`+agAddr+`" }`))
	const want = "spiffe://example.org/metrics/ops"
	srv.CreateEntry(want, ag.ID(), "-selector", uidSelector())
	waitForSVID(t, ag.Addr(), want)

	// A connection that never completes a TLS handshake is refused and
	// counted.
	c, err := net.Dial("tcp", srv.Address)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitMetric(t, srvAddr, `hallmark_node_api_refusals_total{limit="handshake_failed"}`, "failed handshake counted",
		func(v float64) bool { return v >= 1 })

	now := float64(time.Now().Unix())
	sm := metricsOf(t, srvAddr)
	for _, tt := range []struct {
		series string
		ok     func(float64) bool
	}{
		{`hallmark_ca_expiry_timestamp_seconds{state="active"}`, func(v float64) bool { return v > now }},
		{`hallmark_jwt_key_expiry_timestamp_seconds{state="active"}`, func(v float64) bool { return v > now }},
		{`hallmark_attested_agents`, func(v float64) bool { return v == 1 }},
		{`hallmark_rpc_duration_seconds_count{code="OK",method="Attest",service="node"}`, func(v float64) bool { return v == 1 }},
		{`hallmark_rpc_duration_seconds_count{code="OK",method="Sync",service="node"}`, func(v float64) bool { return v >= 1 }},
		{`hallmark_rpc_duration_seconds_count{code="OK",method="CreateEntries",service="admin"}`, func(v float64) bool { return v >= 1 }},
	} {
		if v, ok := sm[tt.series]; !ok || !tt.ok(v) {
			t.Errorf("server: %s = %v (present %v)", tt.series, v, ok)
		}
	}
	if !hasBuildInfo(sm) {
		t.Errorf("server: hallmark_build_info missing or not of version %q with goversion and revision", testenv.Version)
	}

	// SDS: a response, then Envoy's NACK of it.
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "workload.spiffe.io", "true"), 30*time.Second)
	defer cancel()
	s, err := sdsClient(t, ag.SocketPath).StreamSecrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"}}); err != nil {
		t.Fatal(err)
	}
	r, err := s.Recv()
	if err != nil {
		t.Fatalf("SDS: %v", err)
	}
	if err := s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: secretType, ResourceNames: []string{"default"},
		ResponseNonce: r.Nonce, ErrorDetail: &rpcstatus.Status{Code: int32(codes.InvalidArgument), Message: "bad secret"}}); err != nil {
		t.Fatal(err)
	}
	waitMetric(t, agAddr, "hallmark_sds_nacks_total", "NACK counted", func(v float64) bool { return v == 1 })

	am := metricsOf(t, agAddr)
	for _, tt := range []struct {
		series string
		ok     func(float64) bool
	}{
		{"hallmark_sds_pushes_total", func(v float64) bool { return v == 1 }},
		{"hallmark_agent_cache_x509_svids", func(v float64) bool { return v == 1 }},
		{"hallmark_agent_cache_jwt_svids", func(v float64) bool { return v == 0 }},
		{"hallmark_workload_svid_rotations_total", func(v float64) bool { return v >= 1 }},
		{`hallmark_workload_attestation_failures_total{reason="caller_changed"}`, func(v float64) bool { return v == 0 }},
		{`hallmark_rpc_duration_seconds_count{code="OK",method="FetchX509SVID",service="spiffe_workload_api"}`, func(v float64) bool { return v >= 1 }},
		{`hallmark_rpc_duration_seconds_count{code="OK",method="StreamSecrets",service="secret_discovery_service"}`, func(v float64) bool { return v == 1 }},
	} {
		if v, ok := am[tt.series]; !ok || !tt.ok(v) {
			t.Errorf("agent: %s = %v (present %v)", tt.series, v, ok)
		}
	}
	// -version prints the same linked version the metric reports.
	for _, bin := range []string{"hallmark-server", "hallmark-agent"} {
		out, err := exec.Command(filepath.Join(testenv.Binaries(t), bin), "-version").CombinedOutput()
		if got := strings.TrimSpace(string(out)); err != nil || got != testenv.Version {
			t.Errorf("%s -version = %q, %v; want %q", bin, got, err, testenv.Version)
		}
	}
	if !hasBuildInfo(am) {
		t.Errorf("agent: hallmark_build_info missing or not of version %q with goversion and revision", testenv.Version)
	}
}

// hasBuildInfo reports whether hallmark_build_info is 1 with the version
// the binaries were linked with (-ldflags -X main.version, testenv.Version)
// and non-empty goversion and revision labels.
func hasBuildInfo(ms map[string]float64) bool {
	for k, v := range ms {
		if strings.HasPrefix(k, "hallmark_build_info{") && v == 1 && strings.Contains(k, `goversion="go`) &&
			strings.Contains(k, `,version="`+testenv.Version+`"`) && !strings.Contains(k, `revision=""`) {
			return true
		}
	}
	return false
}

// An agent still attesting answers /live and says on /ready why it is not
// ready; when TLS to the server fails on an unknown authority it names
// the stale trust_bundle_path.
func TestAgentLiveWhileAttesting(t *testing.T) {
	env := testenv.New(t)
	srvA := env.StartServer()
	srvB := env.StartServer() // same trust domain, another CA
	agAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	ag := env.StartAgent(srvA, srvB.Token(), testenv.WithServerAddress(srvB.Address), testenv.NoWait(),
		testenv.WithAgentTopHCL(`telemetry { listen_address = "`+agAddr+`" }`))

	var code int
	var body string
	testenv.WaitFor(t, 20*time.Second, "agent /ready names the stale bundle", func() bool {
		if ag.Exited() {
			t.Fatalf("agent exited:\n%s", ag.Log())
		}
		resp, err := http.Get("http://" + agAddr + "/ready")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		return strings.Contains(body, "last attempt failed")
	})
	if code != http.StatusServiceUnavailable {
		t.Errorf("/ready while attesting: %d %s", code, body)
	}
	for _, want := range []string{"attesting to the server at " + srvB.Address, "not signed by any authority in the agent's trust bundle",
		"trust_bundle_path " + srvA.BundlePath(), "stale", "hallmark-server bundle show"} {
		if !strings.Contains(body, want) {
			t.Errorf("/ready body lacks %q: %s", want, body)
		}
	}
	if !strings.Contains(ag.Log(), "trust_bundle_path") {
		t.Errorf("the agent's log does not name trust_bundle_path:\n%s", ag.Log())
	}
	resp, err := http.Get("http://" + agAddr + "/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/live while attesting: %d", resp.StatusCode)
	}
}

// Federation refresh state, scraped from the real server: the time of the
// last success per trust domain, and failures once the other side is down.
func TestFederationMetrics(t *testing.T) {
	env := testenv.New(t)
	port := testenv.FreePort(t)
	other := env.StartServer(testenv.WithTrustDomain("other.org"), testenv.WithHCL(fmt.Sprintf(
		"federation {\n  bundle_endpoint {\n    address = \"127.0.0.1\"\n    port = %d\n  }\n}", port)))
	otherBundle := filepath.Join(env.Dir, "other.pem")
	must(t, os.WriteFile(otherBundle, []byte(other.MustCLI("bundle", "show")), 0o600))
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	a := env.StartServer(testenv.WithHCL(`telemetry { listen_address = "`+metrics+`" }`), testenv.WithHCL(fmt.Sprintf(`federation {
  federates_with "other.org" {
    bundle_endpoint_url = "https://127.0.0.1:%d"
    bundle_endpoint_profile "https_spiffe" {
      endpoint_spiffe_id = "spiffe://other.org/hallmark/server"
    }
    trust_bundle_path = %q
  }
}`, port, otherBundle)))

	before := float64(time.Now().Add(-time.Second).Unix())
	a.MustCLI("federation", "refresh", "-id", "other.org")
	const success = `hallmark_federation_refresh_last_success_timestamp_seconds{trust_domain="other.org"}`
	const failures = `hallmark_federation_refresh_failures_total{trust_domain="other.org"}`
	m := metricsOf(t, metrics)
	last := m[success]
	if last < before {
		t.Fatalf("%s = %v after a successful refresh (want >= %v)", success, last, before)
	}
	failed := m[failures]

	other.Stop()
	if out, err := a.CLI("federation", "refresh", "-id", "other.org"); err == nil {
		t.Fatalf("refresh with the endpoint down succeeded:\n%s", out)
	}
	m = metricsOf(t, metrics)
	if m[failures] != failed+1 || m[success] != last {
		t.Errorf("after a failed refresh: failures %v (was %v), last success %v (was %v)", m[failures], failed, m[success], last)
	}
}
