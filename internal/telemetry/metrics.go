package telemetry

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every series.
const Namespace = "hallmark"

// Label values.
const (
	ResultAccepted = "accepted"
	ResultRejected = "rejected"

	KindAgent    = "agent"    // an agent's own SVID, issued at attestation or renewal
	KindWorkload = "workload" // a workload SVID signed for an agent

	StreamWorkloadAPI = "workload_api"
	StreamSDS         = "sds"

	// Other replaces label values beyond MaxAttestorLabels or malformed.
	Other = "other"
)

// MaxAttestorLabels bounds the distinct attestor label values.
const MaxAttestorLabels = 32

// Config configures Metrics.
type Config struct {
	// Attestors are the node attestor kinds in use; their series exist
	// (at zero) from the start.
	Attestors []string
}

// Metrics holds Hallmark's series in a private registry. Methods on a nil
// *Metrics do nothing.
type Metrics struct {
	reg *prometheus.Registry

	attestations  *prometheus.CounterVec
	issued        *prometheus.CounterVec
	issueDuration *prometheus.HistogramVec
	entries       prometheus.Gauge
	propagation   prometheus.Histogram
	streams       map[string]prometheus.Gauge
	rotations     prometheus.Counter
	agentExpiry   prometheus.Gauge
	datastore     *prometheus.HistogramVec

	mu        sync.Mutex // guards attestors
	attestors map[string]bool
}

// New returns Metrics with every series registered in a fresh registry.
func New(cfg Config) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "attestations_total",
			Help: "Node attestations (first attestation and renewal) by attestor and result (accepted, rejected).",
		}, []string{"attestor", "result"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "svid_issued_total",
			Help: "X.509-SVIDs issued, by kind (agent, workload).",
		}, []string{"kind"}),
		issueDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "svid_issue_duration_seconds",
			Help:    "Time to issue one X.509-SVID (CSR check and signing), by kind.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12), // 100µs .. ~2.4s
		}, []string{"kind"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "entries",
			Help: "Registration entries known (server: in the cache; agent: authorised for this agent).",
		}),
		propagation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "propagation_lag_seconds",
			Help:    "Time from an entry change on the server to the resulting SVID at the agent.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~150s
		}),
		streams: map[string]prometheus.Gauge{
			StreamWorkloadAPI: prometheus.NewGauge(prometheus.GaugeOpts{
				Namespace: Namespace, Name: "workload_api_streams",
				Help: "Open Workload API streams.",
			}),
			StreamSDS: prometheus.NewGauge(prometheus.GaugeOpts{
				Namespace: Namespace, Name: "sds_streams",
				Help: "Open Envoy SDS streams.",
			}),
		},
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "agent_svid_rotations_total",
			Help: "Times the agent renewed its own SVID.",
		}),
		agentExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "agent_svid_expiry_timestamp_seconds",
			Help: "Unix time at which the agent's current SVID expires.",
		}),
		datastore: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "datastore_op_duration_seconds",
			Help:    "Datastore operation latency, by operation.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 14), // 50µs .. ~7s
		}, []string{"op"}),
		attestors: make(map[string]bool),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.attestations, m.issued, m.issueDuration, m.entries, m.propagation,
		m.streams[StreamWorkloadAPI], m.streams[StreamSDS],
		m.rotations, m.agentExpiry, m.datastore,
	)
	for _, k := range []string{KindAgent, KindWorkload} {
		m.issued.WithLabelValues(k)
		m.issueDuration.WithLabelValues(k)
	}
	for _, a := range cfg.Attestors {
		a = m.attestorLabel(a)
		m.attestations.WithLabelValues(a, ResultAccepted)
		m.attestations.WithLabelValues(a, ResultRejected)
	}
	return m
}

// Registry returns the private registry, to add collectors or gather in
// tests.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// Handler serves the registry in the Prometheus exposition formats. A nil
// *Metrics serves an empty registry.
func (m *Metrics) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	if m != nil {
		reg = m.reg
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4, Timeout: 10 * time.Second})
}

// attestorLabel returns a for the attestor label if it is a plausible
// attestor kind and one of the first MaxAttestorLabels seen, else Other.
func (m *Metrics) attestorLabel(a string) string {
	if !validKind(a) {
		return Other
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.attestors[a] {
		return a
	}
	if len(m.attestors) >= MaxAttestorLabels {
		return Other
	}
	m.attestors[a] = true
	return a
}

// validKind reports whether s looks like an attestor kind: 1..32 of
// [a-z0-9_].
func validKind(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Attestation counts one attestation decision. result is ResultAccepted
// or ResultRejected (anything else counts as Other); attestor is the kind
// the agent asked for, which may be garbage: see MaxAttestorLabels.
func (m *Metrics) Attestation(attestor, result string) {
	if m == nil {
		return
	}
	if result != ResultAccepted && result != ResultRejected {
		result = Other
	}
	m.attestations.WithLabelValues(m.attestorLabel(attestor), result).Inc()
}

// SVIDIssued counts one issued SVID of kind KindAgent or KindWorkload and
// observes how long issuing took.
func (m *Metrics) SVIDIssued(kind string, took time.Duration) {
	if m == nil {
		return
	}
	if kind != KindAgent && kind != KindWorkload {
		kind = Other
	}
	m.issued.WithLabelValues(kind).Inc()
	m.issueDuration.WithLabelValues(kind).Observe(took.Seconds())
}

// SetEntries sets the number of registration entries.
func (m *Metrics) SetEntries(n int) {
	if m == nil {
		return
	}
	m.entries.Set(float64(n))
}

// ObservePropagation records the lag from an entry change to its SVID.
func (m *Metrics) ObservePropagation(lag time.Duration) {
	if m == nil {
		return
	}
	m.propagation.Observe(lag.Seconds())
}

// StreamOpened counts an open stream of kind StreamWorkloadAPI or
// StreamSDS and returns the function to call when it closes (calling it
// more than once is harmless): defer m.StreamOpened(telemetry.StreamSDS)().
func (m *Metrics) StreamOpened(kind string) (closed func()) {
	if m == nil {
		return func() {}
	}
	g, ok := m.streams[kind]
	if !ok {
		return func() {}
	}
	g.Inc()
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			g.Dec()
		}
	}
}

// AgentSVIDRotated counts a renewal of the agent's own SVID, which now
// expires at notAfter.
func (m *Metrics) AgentSVIDRotated(notAfter time.Time) {
	if m == nil {
		return
	}
	m.rotations.Inc()
	m.SetAgentSVIDExpiry(notAfter)
}

// SetAgentSVIDExpiry records when the agent's current SVID expires (at
// start-up and after attestation).
func (m *Metrics) SetAgentSVIDExpiry(notAfter time.Time) {
	if m == nil {
		return
	}
	m.agentExpiry.Set(float64(notAfter.UnixNano()) / 1e9)
}

// ObserveDatastore records one datastore operation's latency. op is a
// constant chosen by the caller ("create_entries", "list_entries", ...).
func (m *Metrics) ObserveDatastore(op string, took time.Duration) {
	if m == nil {
		return
	}
	m.datastore.WithLabelValues(op).Observe(took.Seconds())
}

// DatastoreTimer starts timing a datastore operation and returns the
// function that records it: defer m.DatastoreTimer("list_entries")().
func (m *Metrics) DatastoreTimer(op string) (done func()) {
	if m == nil {
		return func() {}
	}
	start := time.Now()
	return func() { m.ObserveDatastore(op, time.Since(start)) }
}

// AuditStats exports the audit log's counters as
// hallmark_audit_records_total{outcome="written"|"failed"|"dropped"},
// read from stats at every scrape (pass a closure over audit.Log.Stats).
func (m *Metrics) AuditStats(stats func() (written, failed, dropped uint64)) {
	if m == nil || stats == nil {
		return
	}
	m.reg.MustRegister(auditCollector{stats})
}

var auditDesc = prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", "audit_records_total"),
	"Audit records by outcome: written to every destination, failed to write, dropped (queue full or log closed).",
	[]string{"outcome"}, nil)

type auditCollector struct {
	stats func() (written, failed, dropped uint64)
}

func (c auditCollector) Describe(ch chan<- *prometheus.Desc) { ch <- auditDesc }

func (c auditCollector) Collect(ch chan<- prometheus.Metric) {
	w, f, d := c.stats()
	ch <- prometheus.MustNewConstMetric(auditDesc, prometheus.CounterValue, float64(w), "written")
	ch <- prometheus.MustNewConstMetric(auditDesc, prometheus.CounterValue, float64(f), "failed")
	ch <- prometheus.MustNewConstMetric(auditDesc, prometheus.CounterValue, float64(d), "dropped")
}
