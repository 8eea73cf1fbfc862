package k8sregistrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/client-go/rest"

	"github.com/hallmarkid/hallmark/internal/kubeapi"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
)

// Defaults of the k8s_registrar block.
const (
	DefaultLeaseName      = "hallmark-registrar"
	DefaultLeaseNamespace = "hallmark"
	DefaultClusterDomain  = "cluster.local"
	DefaultLeaseDuration  = 15 * time.Second
	DefaultRenewDeadline  = 10 * time.Second
	DefaultRetryPeriod    = 2 * time.Second
	// DefaultSPIFFEIDTemplate is the template of the built-in default
	// ClusterSPIFFEID (default_cluster_spiffeid = true): Istio's.
	DefaultSPIFFEIDTemplate = "spiffe://{{ .TrustDomain }}/ns/{{ .PodMeta.Namespace }}/sa/{{ .PodSpec.ServiceAccountName }}"
	// DefaultClusterSPIFFEIDName names the built-in default's entries.
	DefaultClusterSPIFFEIDName = "hallmark-default"
)

// DefaultIgnoreNamespaces are the namespaces whose pods get no entries
// unless ignore_namespaces says otherwise: the control plane's and
// Hallmark's own (spire-controller-manager ignores the same kinds).
var DefaultIgnoreNamespaces = []string{"kube-system", "kube-public", "kube-node-lease", "local-path-storage", "hallmark"}

// HCLConfig is the server's k8s_registrar block.
type HCLConfig struct {
	// Cluster is the cluster name of the k8s_psat node attestor's cluster
	// block for this cluster: agent IDs, hence entry parents, carry it.
	Cluster        string `hcl:"cluster"`
	KubeConfigFile string `hcl:"kube_config_file,optional"`
	InCluster      bool   `hcl:"in_cluster,optional"`
	// LeaderElectionNamespace holds the Lease hallmark-registrar that
	// elects the one server that writes.
	LeaderElectionNamespace string   `hcl:"leader_election_namespace,optional"`
	IgnoreNamespaces        []string `hcl:"ignore_namespaces,optional"`
	ClusterDomain           string   `hcl:"cluster_domain,optional"`
	// ClassName: objects whose className is set to another value are
	// left to another controller; WatchClassless (default true) makes
	// objects without className ours.
	ClassName      string `hcl:"class_name,optional"`
	WatchClassless *bool  `hcl:"watch_classless,optional"`
	// DefaultClusterSPIFFEID adds a built-in fallback ClusterSPIFFEID with
	// Istio's template for every pod of every namespace not ignored.
	DefaultClusterSPIFFEID bool `hcl:"default_cluster_spiffeid,optional"`
}

var clusterName = regexp.MustCompile(`^[A-Za-z0-9._-]{1,63}$`)

// Validate checks the block without contacting the API server.
func (h HCLConfig) Validate() error {
	if !clusterName.MatchString(h.Cluster) {
		return fmt.Errorf("k8sregistrar: cluster %q: want 1-63 of A-Z a-z 0-9 . _ - (the k8s_psat cluster name)", h.Cluster)
	}
	if (h.KubeConfigFile == "") == !h.InCluster {
		return errors.New("k8sregistrar: set exactly one of kube_config_file and in_cluster = true")
	}
	if h.ClusterDomain != "" {
		if err := registration.ValidateDNSName(h.ClusterDomain); err != nil {
			return fmt.Errorf("k8sregistrar: cluster_domain: %w", err)
		}
	}
	for _, ns := range h.IgnoreNamespaces {
		if ns == "" {
			return errors.New("k8sregistrar: ignore_namespaces: empty namespace name")
		}
	}
	return nil
}

// Config builds the registrar's configuration from the block: the API
// server connection (kubeconfig or in-cluster, the rules of
// internal/kubeapi) and the settings, validated.
func (h HCLConfig) Config(td spiffeid.TrustDomain, store Store, log *slog.Logger) (Config, error) {
	if err := h.Validate(); err != nil {
		return Config{}, err
	}
	c := Config{
		TrustDomain: td, Cluster: h.Cluster, ClusterDomain: h.ClusterDomain, ClassName: h.ClassName,
		WatchClassless: h.WatchClassless == nil || *h.WatchClassless, IgnoreNamespaces: h.IgnoreNamespaces,
		LeaseNamespace: h.LeaderElectionNamespace, DefaultClusterSPIFFEID: h.DefaultClusterSPIFFEID,
		Store: store, Log: log,
	}
	if c.IgnoreNamespaces == nil {
		c.IgnoreNamespaces = slices.Clone(DefaultIgnoreNamespaces)
	}
	kc, err := kubeapi.New(kubeapi.Config{KubeConfigFile: h.KubeConfigFile, InCluster: h.InCluster})
	if err != nil {
		return Config{}, fmt.Errorf("k8sregistrar: %w", err)
	}
	host, rt := kc.Transport()
	c.Rest = &rest.Config{Host: host, Transport: rt}
	if err := c.setDefaults(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Store is where the registrar reads and writes entries: the server's
// datastore, with its entry cache kept current.
type Store interface {
	ListEntries(ctx context.Context) ([]registration.Entry, int64, error)
	CreateEntries(ctx context.Context, entries []registration.Entry) ([]datastore.CreateResult, error)
	UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error)
	DeleteEntry(ctx context.Context, id string) (registration.Entry, error)
}

// Federation reports the federation relationship the server is
// configured with for a trust domain: its bundle endpoint URL.
type Federation func(td spiffeid.TrustDomain) (url string, ok bool)

// Config configures a Registrar.
type Config struct {
	TrustDomain            spiffeid.TrustDomain
	Cluster                string
	ClusterDomain          string
	ClassName              string
	WatchClassless         bool
	IgnoreNamespaces       []string
	DefaultClusterSPIFFEID bool

	// Lease that elects the writer, and its timing (defaults above).
	LeaseNamespace, LeaseName                 string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Identity names this candidate in the Lease (default: host name and
	// a random suffix).
	Identity string

	Rest       *rest.Config
	Store      Store
	Federation Federation // nil: no relationship configured
	// Federator applies ClusterFederatedTrustDomain objects as dynamic
	// federation relationships (nil: they are only reported on).
	Federator Federator
	Log       *slog.Logger
}

func (c *Config) setDefaults() error {
	if !clusterName.MatchString(c.Cluster) {
		return fmt.Errorf("k8sregistrar: cluster %q: want 1-63 of A-Z a-z 0-9 . _ - (the k8s_psat cluster name)", c.Cluster)
	}
	if c.TrustDomain.IsZero() {
		return errors.New("k8sregistrar: trust domain is required")
	}
	if c.Store == nil || c.Rest == nil {
		return errors.New("k8sregistrar: store and API server are required")
	}
	if c.ClusterDomain == "" {
		c.ClusterDomain = DefaultClusterDomain
	}
	if err := registration.ValidateDNSName(c.ClusterDomain); err != nil {
		return fmt.Errorf("k8sregistrar: cluster_domain: %w", err)
	}
	if c.LeaseNamespace == "" {
		c.LeaseNamespace = DefaultLeaseNamespace
	}
	if c.LeaseName == "" {
		c.LeaseName = DefaultLeaseName
	}
	if c.LeaseDuration == 0 {
		c.LeaseDuration, c.RenewDeadline, c.RetryPeriod = DefaultLeaseDuration, DefaultRenewDeadline, DefaultRetryPeriod
	}
	if !(c.RetryPeriod > 0 && c.RetryPeriod < c.RenewDeadline && c.RenewDeadline < c.LeaseDuration) {
		return errors.New("k8sregistrar: want 0 < retry period < renew deadline < lease duration")
	}
	if c.Identity == "" {
		host, _ := os.Hostname()
		c.Identity = host + "-" + digest(host, time.Now().String())[:8]
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}
