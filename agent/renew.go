package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"slices"
	"time"

	"github.com/hallmarkid/hallmark/agent/manager"
	"github.com/hallmarkid/hallmark/attestors"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// The agent's own SVID after attestation: renewal at half-life, re-attestation
// when it is tainted or refused, eviction, and the health loop.

// rotateLoop renews the agent SVID at half-life and re-attests when it
// expired and the attestor allows it.
func (a *Agent) rotateLoop(ctx context.Context) {
	for {
		half := a.renewAt()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(half)):
		case <-a.renewNow:
			if !a.svidTainted(a.cache.TaintedKeyIDs()) {
				continue
			}
			a.log.Warn("Renewing the agent SVID now: its issuing authority was tainted")
		}
		a.renew(ctx)
	}
}

// renewAt is the agent SVID's half-life, counted from when it was received
// (or its NotBefore when it was loaded from disk): the server backdates
// NotBefore for clock skew, so counting from it alone would renew a
// short-lived SVID at once, over and over.
func (a *Agent) renewAt() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return halfLife(a.svid.Certificates[0], a.svidAt)
}

func halfLife(leaf *x509.Certificate, receivedAt time.Time) time.Time {
	start := leaf.NotBefore
	if receivedAt.After(start) && receivedAt.Before(leaf.NotAfter) {
		start = receivedAt
	}
	return start.Add(leaf.NotAfter.Sub(start) / 2)
}

// onTainted wakes the rotation loop when the agent SVID's issuer is among
// the tainted authorities.
func (a *Agent) onTainted(keyIDs [][]byte) {
	if !a.svidTainted(keyIDs) {
		return
	}
	select {
	case a.renewNow <- struct{}{}:
	default:
	}
}

func (a *Agent) svidTainted(keyIDs [][]byte) bool {
	s := a.currentSVID()
	if s == nil {
		return false
	}
	aki := s.Certificates[0].AuthorityKeyId
	return len(aki) > 0 && slices.ContainsFunc(keyIDs, func(k []byte) bool { return bytes.Equal(k, aki) })
}

func (a *Agent) renew(ctx context.Context) {
	backoff := time.Second
	for ctx.Err() == nil {
		s := a.currentSVID()
		if !time.Now().Before(s.Certificates[0].NotAfter) {
			a.mu.Lock()
			can := a.canReattest
			a.mu.Unlock()
			if !can {
				a.log.Error("Agent SVID expired and the node attestor cannot re-attest; an operator must provide new attestation material")
				select {
				case <-ctx.Done():
					return
				case <-time.After(time.Minute):
				}
				continue
			}
			if err := a.attestOnce(ctx); err == nil {
				return
			}
		} else if err := a.renewOnce(ctx); err == nil {
			return
		} else {
			a.log.Warn("Agent SVID renewal failed; retrying", "error", a.explainTLS(err), "retry_in", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

func (a *Agent) renewOnce(ctx context.Context) error {
	key, csr, err := manager.NewKeyAndCSR()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	a.mu.Lock()
	var collector attestors.NodeCollector
	if a.canReattest {
		collector = a.collector
	}
	a.mu.Unlock()
	res, err := a.client.Renew(ctx, collector, key, csr)
	if err != nil {
		return err
	}
	return a.adopt(res, key)
}

// onEvicted re-attests an evicted agent when its attestor allows it. Until
// it is attested again the agent reports not ready, saying why: a banned
// agent stays so until an operator lifts the ban (and it re-attests at its
// next try), one that cannot re-attest until an operator acts.
func (a *Agent) onEvicted(err error) {
	a.mu.Lock()
	can := a.canReattest
	a.mu.Unlock()
	why := "evicted by the server (" + status.Convert(err).Message() + ")"
	if !can {
		a.setRefused(why + "; the node attestor cannot re-attest: an operator must provide new attestation material")
		a.log.Error("The server does not know this agent (evicted?) and its node attestor cannot re-attest", "error", err)
		return
	}
	a.setRefused(why + "; re-attesting")
	a.log.Warn("The server does not know this agent (evicted?); re-attesting", "error", err)
	if err := a.attestOnce(context.Background()); err != nil {
		a.setRefused(why + "; re-attestation failed: " + err.Error())
		a.log.Error("Re-attestation failed", "error", err)
	}
}

func (a *Agent) setRefused(why string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.refused = why
}

// healthLoop keeps the health status: serving while the agent SVID is valid.
func (a *Agent) healthLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		st := healthpb.HealthCheckResponse_SERVING
		if a.Ready(ctx) != nil {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		a.health.SetServingStatus("", st)
		select {
		case <-ctx.Done():
			a.health.Shutdown()
			return
		case <-t.C:
		}
	}
}
