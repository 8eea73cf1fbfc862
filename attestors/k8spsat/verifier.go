package k8spsat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// identity is what a validated token says about the agent's pod.
type identity struct {
	Namespace, ServiceAccount string
	PodName, PodUID           string
	NodeName, NodeUID         string // empty before Kubernetes 1.30
}

// validator validates a token for one cluster; the token must carry one
// of audiences.
type validator interface {
	validate(ctx context.Context, token string, audiences []string) (identity, error)
}

type cluster struct {
	name    string
	allowed map[string]bool // "ns:sa"
	// audiences is the cluster's audience setting; nil means the default,
	// DefaultAudience of the request's trust domain.
	audiences []string
	v         validator
}

// Verifier is the server half. It is safe for concurrent use.
type Verifier struct {
	clusters map[string]*cluster
	log      *slog.Logger
}

var _ attestors.NodeVerifier = (*Verifier)(nil)

// Option configures a Verifier.
type Option interface{ apply(*options) }

type options struct {
	newReviewer NewTokenReviewerFunc
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// NewVerifier validates c and prepares every cluster's validator. It reads
// JWKS and CA files now, and has the TokenReview clients read their
// kubeconfig or in-cluster files, so that a bad file stops start-up; it
// contacts no server. Clusters configured with kube_config_file or
// in_cluster need WithTokenReviewers.
func NewVerifier(c ServerConfig, opts ...Option) (*Verifier, error) {
	if len(c.Clusters) == 0 {
		return nil, errNoClusters
	}
	var o options
	for _, opt := range opts {
		opt.apply(&o)
	}
	v := &Verifier{clusters: make(map[string]*cluster), log: c.Log}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	now := c.Now
	if now == nil {
		now = time.Now
	}
	for i := range c.Clusters {
		cc := c.Clusters[i]
		if err := cc.validate(); err != nil {
			return nil, err
		}
		if _, dup := v.clusters[cc.Name]; dup {
			return nil, fmt.Errorf("k8spsat: cluster %q configured twice", cc.Name)
		}
		cl := &cluster{name: cc.Name, allowed: make(map[string]bool), audiences: slices.Clone(cc.Audience)}
		for _, sa := range cc.ServiceAccountAllowList {
			cl.allowed[sa] = true
		}
		var err error
		switch {
		case cc.JWKSURL != "" || cc.JWKSFile != "":
			cl.v, err = newJWKSValidator(&cc, now, v.log)
		default:
			cl.v, err = newReviewValidator(&cc, o.newReviewer)
		}
		if err != nil {
			return nil, err
		}
		v.clusters[cc.Name] = cl
	}
	return v, nil
}

// Type returns "k8s_psat".
func (v *Verifier) Type() string { return Type }

// Verify validates the agent's token and derives its ID and selectors.
func (v *Verifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	res, err := v.verify(ctx, req)
	if err != nil {
		v.log.Warn("k8spsat: attestation rejected", "err", err)
		return attestors.Result{}, err
	}
	return res, nil
}

func (v *Verifier) verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	if req.TrustDomain.IsZero() {
		return attestors.Result{}, errors.New("k8spsat: no trust domain")
	}
	p, err := ParsePayload(req.Payload)
	if err != nil {
		return attestors.Result{}, err
	}
	cl, ok := v.clusters[p.Cluster]
	if !ok {
		return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q is not configured", truncate(p.Cluster))
	}
	audiences := cl.audiences
	if len(audiences) == 0 {
		audiences = []string{DefaultAudience(req.TrustDomain)}
	}
	id, err := cl.v.validate(ctx, p.Token, audiences)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q: %w", cl.name, err)
	}
	if id.Namespace == "" || id.ServiceAccount == "" {
		return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q: token names no service account", cl.name)
	}
	sa := id.Namespace + ":" + id.ServiceAccount
	if !cl.allowed[sa] {
		return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q: service account %q is not allowed", cl.name, truncate(sa))
	}
	if id.PodUID == "" || id.PodName == "" {
		return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q: token is not bound to a pod (not a projected token?)", cl.name)
	}
	uid := id.NodeUID
	if uid == "" {
		uid = id.PodUID
	}
	agentID, err := spiffeid.FromSegments(req.TrustDomain, "agent", Type, cl.name, uid)
	if err != nil {
		return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q: agent ID from UID %q: %w", cl.name, truncate(uid), err)
	}
	if req.Renewal && agentID != req.CurrentID {
		return attestors.Result{}, fmt.Errorf("k8spsat: renewal: token yields %s, agent is %s", agentID, req.CurrentID)
	}

	var sels []registration.Selector
	for _, kv := range [][2]string{
		{"cluster", cl.name}, {"agent_ns", id.Namespace}, {"agent_sa", id.ServiceAccount},
		{"agent_pod_name", id.PodName}, {"agent_pod_uid", id.PodUID},
		{"agent_node_name", id.NodeName}, {"agent_node_uid", id.NodeUID},
	} {
		if kv[1] == "" {
			continue
		}
		s := registration.Selector{Type: Type, Value: kv[0] + ":" + kv[1]}
		if err := s.Validate(); err != nil {
			return attestors.Result{}, fmt.Errorf("k8spsat: cluster %q: %w", cl.name, err)
		}
		sels = append(sels, s)
	}
	sum := sha256.Sum256([]byte(p.Token))
	ev := map[string]string{
		"cluster":         cl.name,
		"service_account": sa,
		"pod_uid":         id.PodUID,
		"token_sha256":    hex.EncodeToString(sum[:]),
	}
	if id.NodeUID != "" {
		ev["node_uid"] = id.NodeUID
	}
	return attestors.Result{
		AgentID:     agentID,
		Selectors:   registration.SortSelectors(sels),
		CanReattest: true,
		Evidence:    ev,
	}, nil
}

// intersects reports whether a and b share an element.
func intersects(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

// splitServiceAccount parses "system:serviceaccount:<ns>:<name>".
func splitServiceAccount(user string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(user, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	ns, name, ok = strings.Cut(rest, ":")
	return ns, name, ok && ns != "" && name != "" && !strings.Contains(name, ":")
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
