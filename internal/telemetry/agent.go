package telemetry

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Workload attestation failure reasons.
const (
	WorkloadNoCredentials  = "no_credentials"  // the connection carries no kernel credentials
	WorkloadCallerChanged  = "caller_changed"  // the process exited, exec'd or changed ids during attestation
	WorkloadTimeout        = "timeout"         // an attestor did not answer in time
	WorkloadAttestorFailed = "attestor_failed" // an attestor failed (kubelet unreachable, /proc unreadable, ...)
)

// newAgent registers the agent's series.
func (m *Metrics) newAgent() {
	m.streams = map[string]prometheus.Gauge{
		StreamWorkloadAPI: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "workload_api_streams",
			Help: "Open Workload API streams.",
		}),
		StreamSDS: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "sds_streams",
			Help: "Open Envoy SDS streams.",
		}),
	}
	m.rotations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "agent_svid_rotations_total",
		Help: "Times the agent got a new SVID of its own (renewal or re-attestation).",
	})
	m.agentExpiry = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "agent_svid_expiry_timestamp_seconds",
		Help: "Unix time at which the agent's current SVID expires.",
	})
	m.waFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "workload_attestation_failures_total",
		Help: "Callers of the Workload API or SDS that could not be attested, by reason (no_credentials, caller_changed, timeout, attestor_failed).",
	}, []string{"reason"})
	m.sdsPushes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "sds_pushes_total",
		Help: "SDS responses sent (first answers and pushed updates).",
	})
	m.sdsNACKs = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "sds_nacks_total",
		Help: "SDS responses Envoy rejected (a request carrying error_detail).",
	})
	m.svidRotation = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "workload_svid_rotations_total",
		Help: "Workload X.509-SVIDs the agent received from the server (first mint, renewal, entry change).",
	})
	m.reg.MustRegister(m.streams[StreamWorkloadAPI], m.streams[StreamSDS], m.rotations, m.agentExpiry,
		m.waFailures, m.sdsPushes, m.sdsNACKs, m.svidRotation)
	for _, r := range []string{WorkloadNoCredentials, WorkloadCallerChanged, WorkloadTimeout, WorkloadAttestorFailed} {
		m.waFailures.WithLabelValues(r)
	}
}

func (m *Metrics) isAgent() bool { return m != nil && m.daemon == Agent }

// StreamOpened counts an open stream of kind StreamWorkloadAPI or
// StreamSDS and returns the function to call when it closes (calling it
// more than once is harmless): defer m.StreamOpened(telemetry.StreamSDS)().
func (m *Metrics) StreamOpened(kind string) (closed func()) {
	if !m.isAgent() {
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

// AgentSVIDRotated counts a new SVID of the agent's own, which expires at
// notAfter.
func (m *Metrics) AgentSVIDRotated(notAfter time.Time) {
	if !m.isAgent() {
		return
	}
	m.rotations.Inc()
	m.SetAgentSVIDExpiry(notAfter)
}

// SetAgentSVIDExpiry records when the agent's current SVID expires (at
// start-up, with the SVID it saved, and after attestation).
func (m *Metrics) SetAgentSVIDExpiry(notAfter time.Time) {
	if !m.isAgent() {
		return
	}
	m.agentExpiry.Set(float64(notAfter.UnixNano()) / 1e9)
}

// WorkloadAttestationFailed counts a caller that could not be attested;
// reason is one of the Workload* constants (anything else: Other).
func (m *Metrics) WorkloadAttestationFailed(reason string) {
	if !m.isAgent() {
		return
	}
	switch reason {
	case WorkloadNoCredentials, WorkloadCallerChanged, WorkloadTimeout, WorkloadAttestorFailed:
	default:
		reason = Other
	}
	m.waFailures.WithLabelValues(reason).Inc()
}

// SDSPushed counts one SDS response sent.
func (m *Metrics) SDSPushed() {
	if !m.isAgent() {
		return
	}
	m.sdsPushes.Inc()
}

// SDSNACKed counts one SDS response Envoy rejected.
func (m *Metrics) SDSNACKed() {
	if !m.isAgent() {
		return
	}
	m.sdsNACKs.Inc()
}

// WorkloadSVIDsRotated counts n workload SVIDs received from the server.
func (m *Metrics) WorkloadSVIDsRotated(n int) {
	if !m.isAgent() || n <= 0 {
		return
	}
	m.svidRotation.Add(float64(n))
}

// CacheStats are the agent cache's sizes.
type CacheStats struct {
	Entries, X509SVIDs, JWTSVIDs, FederatedBundles int
}

// AgentCache exports the agent's cache sizes, read from stats at every
// scrape: hallmark_entries (entries authorised for this agent),
// hallmark_agent_cache_x509_svids, hallmark_agent_cache_jwt_svids and
// hallmark_agent_cache_federated_bundles.
func (m *Metrics) AgentCache(stats func() CacheStats) {
	if !m.isAgent() || stats == nil {
		return
	}
	m.reg.Unregister(m.entries)
	m.gaugeFunc("entries", "Registration entries known (server: in the cache; agent: authorised for this agent).",
		func() float64 { return float64(stats().Entries) })
	m.gaugeFunc("agent_cache_x509_svids", "Workload X.509-SVIDs held in the agent's cache.",
		func() float64 { return float64(stats().X509SVIDs) })
	m.gaugeFunc("agent_cache_jwt_svids", "JWT-SVIDs held in the agent's cache.",
		func() float64 { return float64(stats().JWTSVIDs) })
	m.gaugeFunc("agent_cache_federated_bundles", "Federated trust bundles held in the agent's cache.",
		func() float64 { return float64(stats().FederatedBundles) })
}
