package server

import (
	"context"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/registration"
	"github.com/hallmarkid/hallmark/server/datastore"
	"github.com/hallmarkid/hallmark/server/entrycache"
	"github.com/hallmarkid/hallmark/server/federation"
	"github.com/hallmarkid/hallmark/server/k8sregistrar"
)

// initRegistrar builds the Kubernetes registrar from the k8s_registrar
// block; s.reg stays nil without one.
func (s *Server) initRegistrar() error {
	b := s.cfg.K8sRegistrar
	if b == nil {
		return nil
	}
	var h k8sregistrar.HCLConfig
	if err := hclconf.DecodeBlock(*b, &h); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	log := s.log.With("subsystem", "k8s_registrar")
	cfg, err := h.Config(s.cfg.TrustDomain, cachedStore{Store: s.store, cache: s.entries}, log)
	if err != nil {
		return fmt.Errorf("server: k8s_registrar (%s): %w", b.Pos(), err)
	}
	if s.cfg.Federation != nil {
		// Already validated by initFederation.
		fs, _ := federation.ParseHCL(s.cfg.Federation.Body, s.cfg.TrustDomain)
		cfg.Federation = func(td spiffeid.TrustDomain) (string, bool) {
			for _, r := range fs.Relationships {
				if r.TrustDomain == td {
					return r.URL, true
				}
			}
			return "", false
		}
	}
	if s.fed != nil {
		cfg.Federator = fedAdapter{s.fed}
	}
	if s.reg, err = k8sregistrar.New(cfg); err != nil {
		return fmt.Errorf("server: k8s_registrar (%s): %w", b.Pos(), err)
	}
	log.Info("Kubernetes registrar configured", "cluster", cfg.Cluster, "lease", cfg.LeaseNamespace+"/"+cfg.LeaseName,
		"default_cluster_spiffeid", cfg.DefaultClusterSPIFFEID)
	return nil
}

// startRegistrar runs the registrar until ctx is done.
func (s *Server) startRegistrar(ctx context.Context) {
	if s.reg == nil {
		return
	}
	s.regDone = make(chan struct{})
	go func() {
		defer close(s.regDone)
		if err := s.reg.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("Kubernetes registrar stopped", "error", err)
		}
	}()
}

// waitRegistrar waits (a bounded time) for the registrar to stop writing
// and release its Lease, before the datastore closes.
func (s *Server) waitRegistrar() {
	if s.regDone == nil {
		return
	}
	select {
	case <-s.regDone:
	case <-time.After(5 * time.Second):
		s.log.Warn("Kubernetes registrar did not stop within 5 s")
	}
}

// fedAdapter gives the registrar the dynamic federation relationships.
type fedAdapter struct{ f *federation.Fetcher }

func (a fedAdapter) List(ctx context.Context) ([]federation.Relationship, error) {
	return a.f.DynamicRelationships(ctx)
}

func (a fedAdapter) Create(ctx context.Context, rel federation.Relationship, b *spiffebundle.Bundle) error {
	_, err := a.f.CreateRelationship(ctx, rel, b)
	return err
}

func (a fedAdapter) Update(ctx context.Context, rel federation.Relationship, b *spiffebundle.Bundle) error {
	_, err := a.f.UpdateRelationship(ctx, rel, b)
	return err
}

func (a fedAdapter) Delete(ctx context.Context, td spiffeid.TrustDomain) error {
	return a.f.DeleteRelationship(ctx, td)
}

// cachedStore is the datastore as the registrar writes it: every change
// is applied to this server's entry cache as it commits (other servers on
// the same PostgreSQL see it through the change feed), as the admin API
// does.
type cachedStore struct {
	datastore.Store
	cache *entrycache.Cache
}

func (c cachedStore) CreateEntries(ctx context.Context, es []registration.Entry) ([]datastore.CreateResult, error) {
	res, err := c.Store.CreateEntries(ctx, es)
	if err != nil {
		return nil, err
	}
	var ok []registration.Entry
	var rev int64
	for _, r := range res {
		if r.Err == nil {
			ok = append(ok, r.Entry)
			rev = max(rev, r.Entry.Revision)
		}
	}
	c.cache.Apply(ok, nil, rev)
	return res, nil
}

func (c cachedStore) UpdateEntry(ctx context.Context, e registration.Entry) (registration.Entry, error) {
	got, err := c.Store.UpdateEntry(ctx, e)
	if err != nil {
		return got, err
	}
	c.cache.Apply([]registration.Entry{got}, nil, got.Revision)
	return got, nil
}

func (c cachedStore) DeleteEntry(ctx context.Context, id string) (registration.Entry, error) {
	e, err := c.Store.DeleteEntry(ctx, id)
	if err != nil {
		return e, err
	}
	c.cache.Apply(nil, []string{id}, 0)
	return e, nil
}
