package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/hallmarkid/hallmark/internal/telemetry"
)

func serve(t *testing.T, m *telemetry.Metrics, ready func(context.Context) error) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	addr, err := telemetry.Serve(ctx, "127.0.0.1:0", m, ready, nil)
	if err != nil {
		t.Fatal(err)
	}
	return "http://" + addr.String()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	return fams
}

// value returns the value of the series of name with exactly labels.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("series %s missing", name)
	}
	for _, m := range f.GetMetric() {
		got := make(map[string]string)
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		if fmt.Sprint(got) != fmt.Sprint(labels) {
			continue
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			return m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
		t.Fatalf("%s: unexpected type %v", name, f.GetType())
	}
	t.Fatalf("%s%v missing", name, labels)
	return 0
}

func TestServerSeries(t *testing.T) {
	m := telemetry.New(telemetry.Config{Daemon: telemetry.Server, Attestors: []string{"tpm", "k8s_psat"}, Version: "v1.2.3"})
	m.Attestation("tpm", telemetry.ResultAccepted)
	m.Attestation("tpm", telemetry.ResultAccepted)
	m.Attestation("join_token", telemetry.ResultRejected)
	m.SVIDIssued(telemetry.KindAgent, 2*time.Millisecond)
	m.SVIDIssued(telemetry.KindWorkload, time.Millisecond)
	m.SVIDIssued(telemetry.KindWorkload, time.Millisecond)
	m.SVIDIssued(telemetry.KindJWT, time.Millisecond)
	m.SetEntries(42)
	m.ObservePropagation(30 * time.Millisecond)
	m.DatastoreTimer("list_entries")()
	m.ObserveDatastore("create_entries", time.Millisecond)
	m.AuditStats(func() (uint64, uint64, uint64) { return 7, 1, 2 })
	m.NodeAPIRefused("attestation_rate")
	m.NodeAPIRefused("attestation_rate")
	m.FederationRefreshed("other.example", time.Unix(1_700_000_000, 0), nil)
	m.FederationRefreshed("other.example", time.Unix(1_700_000_100, 0), errors.New("down"))
	m.AttestedAgents(func() int { return 5 })
	m.AuthorityExpiry("x509", func() map[string]time.Time {
		return map[string]time.Time{"active": time.Unix(1_900_000_000, 0), "prepared": {}}
	})
	m.AuthorityExpiry(telemetry.KindJWT, func() map[string]time.Time { return map[string]time.Time{"active": time.Unix(1_800_000_000, 0)} })
	// Agent series are not the server's: these do nothing.
	m.StreamOpened(telemetry.StreamSDS)
	m.SetAgentSVIDExpiry(time.Unix(1, 0))

	fams := scrape(t, serve(t, m, nil))
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hallmark_attestations_total", map[string]string{"attestor": "tpm", "result": "accepted"}, 2},
		{"hallmark_attestations_total", map[string]string{"attestor": "tpm", "result": "rejected"}, 0},
		{"hallmark_attestations_total", map[string]string{"attestor": "k8s_psat", "result": "accepted"}, 0},
		{"hallmark_attestations_total", map[string]string{"attestor": "join_token", "result": "rejected"}, 1},
		{"hallmark_svid_issued_total", map[string]string{"kind": "agent"}, 1},
		{"hallmark_svid_issued_total", map[string]string{"kind": "workload"}, 2},
		{"hallmark_svid_issued_total", map[string]string{"kind": "jwt"}, 1},
		{"hallmark_svid_issue_duration_seconds", map[string]string{"kind": "workload"}, 2},
		{"hallmark_entries", map[string]string{}, 42},
		{"hallmark_propagation_lag_seconds", map[string]string{}, 1},
		{"hallmark_datastore_op_duration_seconds", map[string]string{"op": "list_entries"}, 1},
		{"hallmark_datastore_op_duration_seconds", map[string]string{"op": "create_entries"}, 1},
		{"hallmark_audit_records_total", map[string]string{"outcome": "written"}, 7},
		{"hallmark_audit_records_total", map[string]string{"outcome": "dropped"}, 2},
		{"hallmark_node_api_refusals_total", map[string]string{"limit": "attestation_rate"}, 2},
		{"hallmark_federation_refresh_last_success_timestamp_seconds", map[string]string{"trust_domain": "other.example"}, 1_700_000_000},
		{"hallmark_federation_refresh_failures_total", map[string]string{"trust_domain": "other.example"}, 1},
		{"hallmark_attested_agents", map[string]string{}, 5},
		{"hallmark_ca_expiry_timestamp_seconds", map[string]string{"state": "active"}, 1_900_000_000},
		{"hallmark_jwt_key_expiry_timestamp_seconds", map[string]string{"state": "active"}, 1_800_000_000},
		{"hallmark_build_info", map[string]string{"version": "v1.2.3", "goversion": runtime.Version(), "revision": revision(t, fams)}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_resident_memory_bytes", "process_open_fds"} {
		if _, ok := fams[name]; !ok {
			t.Errorf("collector series %s missing", name)
		}
	}
	for _, name := range []string{"hallmark_sds_streams", "hallmark_workload_api_streams", "hallmark_agent_svid_expiry_timestamp_seconds",
		"hallmark_agent_svid_rotations_total", "hallmark_workload_attestation_failures_total"} {
		if _, ok := fams[name]; ok {
			t.Errorf("server exports the agent series %s", name)
		}
	}
	if len(fams["hallmark_ca_expiry_timestamp_seconds"].GetMetric()) != 1 {
		t.Errorf("a zero expiry (no prepared CA) is exported: %v", fams["hallmark_ca_expiry_timestamp_seconds"])
	}
	if h := fams["hallmark_svid_issue_duration_seconds"]; h.GetType() != dto.MetricType_HISTOGRAM {
		t.Errorf("issue duration is a %v", h.GetType())
	}
}

// revision returns hallmark_build_info's revision label.
func revision(t *testing.T, fams map[string]*dto.MetricFamily) string {
	t.Helper()
	for _, m := range fams["hallmark_build_info"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "revision" {
				return lp.GetValue()
			}
		}
	}
	t.Fatal("hallmark_build_info has no revision")
	return ""
}

func TestAgentSeries(t *testing.T) {
	m := telemetry.New(telemetry.Config{Daemon: telemetry.Agent})
	closeSDS := m.StreamOpened(telemetry.StreamSDS)
	m.StreamOpened(telemetry.StreamSDS)
	m.StreamOpened(telemetry.StreamWorkloadAPI)
	closeSDS()
	closeSDS() // harmless
	m.AgentSVIDRotated(time.Unix(1_800_000_000, 0))
	m.WorkloadAttestationFailed(telemetry.WorkloadCallerChanged)
	m.WorkloadAttestationFailed("made up")
	m.SDSPushed()
	m.SDSPushed()
	m.SDSNACKed()
	m.WorkloadSVIDsRotated(3)
	m.AgentCache(func() telemetry.CacheStats {
		return telemetry.CacheStats{Entries: 4, X509SVIDs: 3, JWTSVIDs: 2, FederatedBundles: 1}
	})
	// Server series are not the agent's: these do nothing.
	m.Attestation("tpm", telemetry.ResultAccepted)
	m.SVIDIssued(telemetry.KindJWT, time.Millisecond)
	m.DatastoreTimer("list_entries")()

	fams := scrape(t, serve(t, m, nil))
	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"hallmark_sds_streams", map[string]string{}, 1},
		{"hallmark_workload_api_streams", map[string]string{}, 1},
		{"hallmark_agent_svid_rotations_total", map[string]string{}, 1},
		{"hallmark_agent_svid_expiry_timestamp_seconds", map[string]string{}, 1_800_000_000},
		{"hallmark_workload_attestation_failures_total", map[string]string{"reason": "caller_changed"}, 1},
		{"hallmark_workload_attestation_failures_total", map[string]string{"reason": "timeout"}, 0},
		{"hallmark_workload_attestation_failures_total", map[string]string{"reason": "other"}, 1},
		{"hallmark_sds_pushes_total", map[string]string{}, 2},
		{"hallmark_sds_nacks_total", map[string]string{}, 1},
		{"hallmark_workload_svid_rotations_total", map[string]string{}, 3},
		{"hallmark_entries", map[string]string{}, 4},
		{"hallmark_agent_cache_x509_svids", map[string]string{}, 3},
		{"hallmark_agent_cache_jwt_svids", map[string]string{}, 2},
		{"hallmark_agent_cache_federated_bundles", map[string]string{}, 1},
	}
	for _, tt := range tests {
		if got := value(t, fams, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	for _, name := range []string{"hallmark_attestations_total", "hallmark_svid_issued_total", "hallmark_datastore_op_duration_seconds",
		"hallmark_audit_records_total", "hallmark_propagation_lag_seconds"} {
		if _, ok := fams[name]; ok {
			t.Errorf("agent exports the server series %s", name)
		}
	}
	if _, ok := fams["hallmark_build_info"]; !ok {
		t.Error("agent lacks hallmark_build_info")
	}
}

func TestAttestorLabelsBounded(t *testing.T) {
	m := telemetry.New(telemetry.Config{})
	for i := range 100 {
		m.Attestation(fmt.Sprintf("garbage_%d", i), telemetry.ResultRejected)
	}
	m.Attestation("Bad Kind\n", "weird")
	fams := scrape(t, serve(t, m, nil))
	series := fams["hallmark_attestations_total"].GetMetric()
	if len(series) > telemetry.MaxAttestorLabels+2 {
		t.Errorf("%d series for attestations", len(series))
	}
	if got := value(t, fams, "hallmark_attestations_total", map[string]string{"attestor": "other", "result": "rejected"}); got != 100-telemetry.MaxAttestorLabels {
		t.Errorf("other/rejected = %v", got)
	}
	if got := value(t, fams, "hallmark_attestations_total", map[string]string{"attestor": "other", "result": "other"}); got != 1 {
		t.Errorf("other/other = %v", got)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *telemetry.Metrics
	m.Attestation("tpm", "accepted")
	m.SVIDIssued("agent", time.Second)
	m.NodeAPIRefused("connections")
	m.FederationRefreshed("td", time.Now(), nil)
	m.AttestedAgents(func() int { return 1 })
	m.AuthorityExpiry("jwt", func() map[string]time.Time { return nil })
	m.WorkloadAttestationFailed("timeout")
	m.SDSPushed()
	m.SDSNACKed()
	m.WorkloadSVIDsRotated(1)
	m.AgentCache(func() telemetry.CacheStats { return telemetry.CacheStats{} })
	if m.ServerOptions() != nil {
		t.Error("nil Metrics has server options")
	}
	m.SetEntries(1)
	m.ObservePropagation(time.Second)
	m.StreamOpened(telemetry.StreamSDS)()
	m.AgentSVIDRotated(time.Now())
	m.SetAgentSVIDExpiry(time.Now())
	m.ObserveDatastore("x", time.Second)
	m.DatastoreTimer("x")()
	m.AuditStats(func() (uint64, uint64, uint64) { return 0, 0, 0 })
	if m.Registry() != nil {
		t.Error("nil Metrics has a registry")
	}
	base := serve(t, m, nil)
	if code, _ := get(t, base+"/metrics"); code != http.StatusOK {
		t.Errorf("/metrics with nil Metrics: %d", code)
	}
}

func TestHealthEndpoints(t *testing.T) {
	defer telemetry.SetReadyCacheFor(0)()
	var notReady atomic.Pointer[error]
	calls := atomic.Int32{}
	ready := telemetry.AllReady(
		telemetry.Check{Name: "datastore", Check: func(context.Context) error {
			calls.Add(1)
			if p := notReady.Load(); p != nil {
				return *p
			}
			return nil
		}},
		telemetry.Check{Name: "ca", Check: func(context.Context) error { return nil }},
	)
	base := serve(t, telemetry.New(telemetry.Config{}), ready)

	tests := []struct {
		name     string
		path     string
		notReady error
		wantCode int
		wantBody string
	}{
		{name: "live", path: "/live", wantCode: 200, wantBody: "ok"},
		{name: "ready", path: "/ready", wantCode: 200, wantBody: "ready"},
		{name: "not ready", path: "/ready", notReady: errors.New("database is down"), wantCode: 503, wantBody: "not ready: datastore: database is down"},
		{name: "live while not ready", path: "/live", notReady: errors.New("x"), wantCode: 200, wantBody: "ok"},
		{name: "ready again", path: "/ready", wantCode: 200, wantBody: "ready"},
		{name: "unknown path", path: "/debug/pprof/", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.notReady != nil {
				notReady.Store(&tt.notReady)
			} else {
				notReady.Store(nil)
			}
			code, body := get(t, base+tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("%s: %d %q, want %d %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}
	resp, err := http.Post(base+"/ready", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /ready: %d", resp.StatusCode)
	}
	if calls.Load() == 0 {
		t.Error("ready func never called")
	}
}

func TestReadyAnswersAreReused(t *testing.T) {
	defer telemetry.SetReadyCacheFor(time.Hour)()
	var calls atomic.Int32
	base := serve(t, nil, func(context.Context) error { calls.Add(1); return errors.New("starting") })
	for range 20 {
		if code, _ := get(t, base+"/ready"); code != 503 {
			t.Fatalf("code %d", code)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("ready called %d times for 20 probes within the cache period", calls.Load())
	}
}

func TestServeStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	addr, err := telemetry.Serve(ctx, "127.0.0.1:0", nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still listening after the context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := telemetry.Serve(context.Background(), "256.0.0.1:1", nil, nil, nil); err == nil || !strings.Contains(err.Error(), "telemetry: listen") {
		t.Errorf("bad address: %v", err)
	}
}

func TestHCLConfig(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		enabled bool
		wantErr string
	}{
		{name: "off", addr: ""},
		{name: "default", addr: telemetry.DefaultListenAddress, enabled: true},
		{name: "all interfaces", addr: "0.0.0.0:9988", enabled: true},
		{name: "ipv6", addr: "[::1]:9988", enabled: true},
		{name: "localhost", addr: "localhost:9988", enabled: true},
		{name: "no port", addr: "127.0.0.1", enabled: true, wantErr: "missing port"},
		{name: "hostname", addr: "metrics.example.org:9988", enabled: true, wantErr: "IP address"},
		{name: "bad port", addr: "127.0.0.1:99999", enabled: true, wantErr: "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := telemetry.HCLConfig{ListenAddress: tt.addr}
			if h.Enabled() != tt.enabled {
				t.Errorf("Enabled = %v", h.Enabled())
			}
			err := h.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func BenchmarkAttestation(b *testing.B) {
	m := telemetry.New(telemetry.Config{Attestors: []string{"tpm"}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Attestation("tpm", telemetry.ResultAccepted)
		}
	})
}

func BenchmarkSVIDIssued(b *testing.B) {
	m := telemetry.New(telemetry.Config{})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.SVIDIssued(telemetry.KindWorkload, time.Millisecond)
		}
	})
}

func BenchmarkStreamOpened(b *testing.B) {
	m := telemetry.New(telemetry.Config{})
	b.ReportAllocs()
	for b.Loop() {
		m.StreamOpened(telemetry.StreamSDS)()
	}
}
