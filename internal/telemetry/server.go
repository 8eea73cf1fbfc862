package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// newServer registers the server's series.
func (m *Metrics) newServer(cfg Config) {
	m.attestations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "attestations_total",
		Help: "Node attestations (first attestation and renewal) by attestor and result (accepted, rejected).",
	}, []string{"attestor", "result"})
	m.issued = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "svid_issued_total",
		Help: "SVIDs issued, by kind (agent, workload, jwt).",
	}, []string{"kind"})
	m.issueDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "svid_issue_duration_seconds",
		Help:    "Time to issue one SVID (X.509: CSR check and signing; JWT: signing), by kind.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12), // 100µs .. ~2.4s
	}, []string{"kind"})
	m.propagation = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "propagation_lag_seconds",
		Help:    "Time from an entry change on the server to the resulting SVID at the agent.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14), // 1ms .. ~150s
	})
	m.datastore = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "datastore_op_duration_seconds",
		Help:    "Datastore operation latency, by operation.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2.5, 14), // 50µs .. ~7s
	}, []string{"op"})
	m.admission = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "node_api_refusals_total",
		Help: "Unauthenticated Node API work refused, by the limit that refused it (node_api limits; handshake_failed counts failed TLS handshakes).",
	}, []string{"limit"})
	m.fedSuccess = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "federation_refresh_last_success_timestamp_seconds",
		Help: "Unix time of the last successful refresh of a federated trust domain's bundle.",
	}, []string{"trust_domain"})
	m.fedFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Name: "federation_refresh_failures_total",
		Help: "Failed refreshes of a federated trust domain's bundle.",
	}, []string{"trust_domain"})
	m.reg.MustRegister(m.attestations, m.issued, m.issueDuration, m.propagation, m.datastore, m.admission,
		m.fedSuccess, m.fedFailures)
	for _, k := range []string{KindAgent, KindWorkload, KindJWT} {
		m.issued.WithLabelValues(k)
		m.issueDuration.WithLabelValues(k)
	}
	for _, a := range cfg.Attestors {
		a = m.bounded("attestor", a)
		m.attestations.WithLabelValues(a, ResultAccepted)
		m.attestations.WithLabelValues(a, ResultRejected)
	}
}

func (m *Metrics) isServer() bool { return m != nil && m.daemon != Agent }

// Attestation counts one attestation decision. result is ResultAccepted
// or ResultRejected (anything else counts as Other); attestor is the kind
// the agent asked for, which may be garbage: see MaxAttestorLabels.
func (m *Metrics) Attestation(attestor, result string) {
	if !m.isServer() {
		return
	}
	if result != ResultAccepted && result != ResultRejected {
		result = Other
	}
	m.attestations.WithLabelValues(m.bounded("attestor", attestor), result).Inc()
}

// SVIDIssued counts one issued SVID of kind KindAgent, KindWorkload or
// KindJWT and observes how long issuing took.
func (m *Metrics) SVIDIssued(kind string, took time.Duration) {
	if !m.isServer() {
		return
	}
	if kind != KindAgent && kind != KindWorkload && kind != KindJWT {
		kind = Other
	}
	m.issued.WithLabelValues(kind).Inc()
	m.issueDuration.WithLabelValues(kind).Observe(took.Seconds())
}

// ObservePropagation records the lag from an entry change to its SVID.
func (m *Metrics) ObservePropagation(lag time.Duration) {
	if !m.isServer() {
		return
	}
	m.propagation.Observe(lag.Seconds())
}

// ObserveDatastore records one datastore operation's latency. op is a
// constant chosen by the backend ("create_entries", "list_entries", ...).
func (m *Metrics) ObserveDatastore(op string, took time.Duration) {
	if !m.isServer() {
		return
	}
	m.datastore.WithLabelValues(m.bounded("op", op)).Observe(took.Seconds())
}

// DatastoreTimer starts timing a datastore operation and returns the
// function that records it: defer m.DatastoreTimer("list_entries")().
func (m *Metrics) DatastoreTimer(op string) (done func()) {
	if !m.isServer() {
		return func() {}
	}
	start := time.Now()
	return func() { m.ObserveDatastore(op, time.Since(start)) }
}

// NodeAPIRefused counts unauthenticated Node API work refused by limit
// (one of the admission limits' names).
func (m *Metrics) NodeAPIRefused(limit string) {
	if !m.isServer() {
		return
	}
	m.admission.WithLabelValues(m.bounded("limit", limit)).Inc()
}

// FederationRefreshed records a refresh of trust domain td's bundle: its
// time when err is nil, a failure otherwise. Trust domains come from the
// configuration and `bundle set`, so they are bounded like attestors.
func (m *Metrics) FederationRefreshed(td string, at time.Time, err error) {
	if !m.isServer() {
		return
	}
	td = m.boundedTD(td)
	if err != nil {
		m.fedFailures.WithLabelValues(td).Inc()
		return
	}
	m.fedSuccess.WithLabelValues(td).Set(float64(at.UnixNano()) / 1e9)
	m.fedFailures.WithLabelValues(td)
}

// boundedTD admits the first MaxAttestorLabels trust domain names (which
// hold dots and dashes, unlike kinds).
func (m *Metrics) boundedTD(td string) string {
	if len(td) == 0 || len(td) > 255 {
		return Other
	}
	for i := 0; i < len(td); i++ {
		c := td[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return Other
		}
	}
	return m.admit("trust_domain", td)
}

// AttestedAgents exports hallmark_attested_agents, read from count at
// every scrape (the server passes a cached count, not a query).
func (m *Metrics) AttestedAgents(count func() int) {
	if !m.isServer() || count == nil {
		return
	}
	m.gaugeFunc("attested_agents", "Attested agents known to the datastore (banned ones included), as of the last count.",
		func() float64 { return float64(count()) })
}

// AuthorityExpiry exports the expiry of the CA (kind "x509":
// hallmark_ca_expiry_timestamp_seconds) or JWT signing keys (kind "jwt":
// hallmark_jwt_key_expiry_timestamp_seconds) by state (active, prepared,
// old), read from read at every scrape.
func (m *Metrics) AuthorityExpiry(kind string, read func() map[string]time.Time) {
	if !m.isServer() || read == nil {
		return
	}
	name, help := "ca_expiry_timestamp_seconds", "Unix time at which the X.509 CA certificate in each state (active, prepared, old) expires."
	if kind == KindJWT {
		name, help = "jwt_key_expiry_timestamp_seconds", "Unix time at which the JWT signing key in each state (active, prepared, old) expires."
	}
	m.reg.MustRegister(expiryCollector{
		desc: prometheus.NewDesc(prometheus.BuildFQName(Namespace, "", name), help, []string{"state"}, nil),
		read: read,
	})
}

// AuditStats exports the audit log's counters as
// hallmark_audit_records_total{outcome="written"|"failed"|"dropped"},
// read from stats at every scrape (pass a closure over audit.Log.Stats).
func (m *Metrics) AuditStats(stats func() (written, failed, dropped uint64)) {
	if !m.isServer() || stats == nil {
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
