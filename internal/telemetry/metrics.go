package telemetry

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hallmarkid/hallmark/internal/buildinfo"
)

// Namespace prefixes every series.
const Namespace = "hallmark"

// Daemon says whose series a registry holds.
type Daemon string

// The daemons.
const (
	Server Daemon = "server"
	Agent  Daemon = "agent"
)

// Label values.
const (
	ResultAccepted = "accepted"
	ResultRejected = "rejected"

	KindAgent    = "agent"    // an agent's own SVID, issued at attestation or renewal
	KindWorkload = "workload" // a workload X.509-SVID signed for an agent
	KindJWT      = "jwt"      // a JWT-SVID signed for an agent

	StreamWorkloadAPI = "workload_api"
	StreamSDS         = "sds"

	// Other replaces label values beyond a label's bound, or malformed.
	Other = "other"
)

// MaxAttestorLabels bounds the distinct attestor label values; the same
// bound applies to every label whose values are not a fixed set.
const MaxAttestorLabels = 32

// Config configures Metrics.
type Config struct {
	// Daemon selects the series: each daemon exports only its own
	// (Server when empty).
	Daemon Daemon
	// Attestors are the node attestor kinds in use (server); their series
	// exist (at zero) from the start.
	Attestors []string
	// Version is hallmark_build_info's version label: what -version
	// prints (buildinfo.Version of the -ldflags -X value); empty: the
	// development version buildinfo derives from what Go recorded.
	Version string
}

// Metrics holds one daemon's series in a private registry. Methods on a
// nil *Metrics, and methods for the other daemon's series, do nothing.
type Metrics struct {
	reg    *prometheus.Registry
	daemon Daemon

	// both daemons
	entries   prometheus.Gauge
	rpc       *prometheus.HistogramVec
	rpcSeries sync.Map // rpcKey -> prometheus.Observer

	// server
	attestations  *prometheus.CounterVec
	issued        *prometheus.CounterVec
	issueDuration *prometheus.HistogramVec
	propagation   prometheus.Histogram
	datastore     *prometheus.HistogramVec
	admission     *prometheus.CounterVec
	fedSuccess    *prometheus.GaugeVec
	fedFailures   *prometheus.CounterVec

	// agent
	streams      map[string]prometheus.Gauge
	rotations    prometheus.Counter
	agentExpiry  prometheus.Gauge
	waFailures   *prometheus.CounterVec
	sdsPushes    prometheus.Counter
	sdsNACKs     prometheus.Counter
	svidRotation prometheus.Counter

	labels sync.Map // label name -> *boundedLabel
}

// New returns Metrics with the series of cfg.Daemon registered in a fresh
// registry, with the Go and process collectors and hallmark_build_info.
func New(cfg Config) *Metrics {
	if cfg.Daemon == "" {
		cfg.Daemon = Server
	}
	m := &Metrics{reg: prometheus.NewRegistry(), daemon: cfg.Daemon}
	m.entries = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "entries",
		Help: "Registration entries known (server: in the cache; agent: authorised for this agent).",
	})
	m.rpc = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "rpc_duration_seconds",
		Help:    "gRPC call latency by service, method and status code: a unary call until its answer, a stream until its first response (or its end, when it sends none).",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 14), // 100µs .. ~15s
	}, []string{"service", "method", "code"})
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(cfg.Version),
		m.entries, m.rpc,
	)
	switch cfg.Daemon {
	case Agent:
		m.newAgent()
	default:
		m.newServer(cfg)
	}
	return m
}

// Daemon returns whose series m holds.
func (m *Metrics) Daemon() Daemon {
	if m == nil {
		return ""
	}
	return m.daemon
}

// buildInfo is hallmark_build_info{version, goversion, revision} 1.
func buildInfo(version string) prometheus.Collector {
	revision := "unknown"
	if version == "" {
		version = buildinfo.Version("")
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Always 1; the labels say which build runs.",
		ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version(), "revision": revision},
	})
	g.Set(1)
	return g
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

// SetEntries sets the number of registration entries.
func (m *Metrics) SetEntries(n int) {
	if m == nil {
		return
	}
	m.entries.Set(float64(n))
}

// boundedLabel admits the first values of one label.
type boundedLabel struct {
	admitted sync.Map // value -> struct{}; read without the lock

	mu sync.Mutex // guards n
	n  int
}

// bounded returns v for label name if it is a plausible kind ([a-z0-9_],
// 1..32) and one of the first MaxAttestorLabels seen for name, else Other.
func (m *Metrics) bounded(name, v string) string {
	if !validKind(v) {
		return Other
	}
	return m.admit(name, v)
}

// admit returns v if it is one of the first MaxAttestorLabels values seen
// for label name, else Other.
func (m *Metrics) admit(name, v string) string { return m.admitN(name, v, MaxAttestorLabels) }

// admitN returns v if it is one of the first n values seen for label
// name, else Other.
func (m *Metrics) admitN(name, v string, n int) string {
	l, ok := m.labels.Load(name)
	if !ok {
		l, _ = m.labels.LoadOrStore(name, &boundedLabel{})
	}
	b := l.(*boundedLabel)
	if _, ok := b.admitted.Load(v); ok {
		return v
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.admitted.Load(v); ok {
		return v
	}
	if b.n >= n {
		return Other
	}
	b.n++
	b.admitted.Store(v, struct{}{})
	return v
}

// validKind reports whether s looks like a kind: 1..32 of [a-z0-9_].
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

// gaugeFunc registers a gauge read from f at every scrape.
func (m *Metrics) gaugeFunc(name, help string, f func() float64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: Namespace, Name: name, Help: help}, f))
}

// expiryCollector exports a timestamp per authority state, read at
// scrape time.
type expiryCollector struct {
	desc *prometheus.Desc
	read func() map[string]time.Time
}

func (c expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for state, t := range c.read() {
		if t.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.UnixNano())/1e9, state)
	}
}
