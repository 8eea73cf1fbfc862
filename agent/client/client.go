// Package client is the agent's connection to the server's Node API:
// attestation (with challenge/response), agent SVID renewal, the entry push
// stream and batch signing, over TLS that authenticates the server by its
// SPIFFE ID against the trust bundle.
//
// It must not import server packages other than the wire types.
package client

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	apiv1 "github.com/hallmarkid/hallmark/api/v1"
	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/internal/x509util"
)

// Config configures a Client.
type Config struct {
	Address     string // host:port
	TrustDomain spiffeid.TrustDomain
	// Bundle is the trust bundle used to authenticate the server. Nil with
	// InsecureBootstrap means the first attestation does not verify it.
	Bundle            []*x509.Certificate
	InsecureBootstrap bool
	// DeferBundle allows a nil Bundle without InsecureBootstrap: the
	// caller sets one with SetBundle before the first call (a bundle to be
	// downloaded). Until then every connection fails.
	DeferBundle bool
}

// Client talks to the server. It is safe for concurrent use.
type Client struct {
	cfg      Config
	serverID spiffeid.ID

	bundle atomic.Pointer[x509bundle.Bundle]
	svid   atomic.Pointer[x509svid.SVID]

	mu   sync.Mutex // guards conn
	conn *channel   // the shared mTLS channel, nil until first used
}

// New returns a client.
func New(cfg Config) (*Client, error) {
	c := &Client{cfg: cfg}
	id, err := spiffeid.FromSegments(cfg.TrustDomain, "hallmark", "server")
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.serverID = id
	if len(cfg.Bundle) > 0 {
		c.SetBundle(cfg.Bundle)
	} else if !cfg.InsecureBootstrap && !cfg.DeferBundle {
		return nil, errors.New("client: a trust bundle is required unless insecure bootstrap is enabled")
	}
	return c, nil
}

// SetBundle replaces the bundle the server is verified against.
func (c *Client) SetBundle(certs []*x509.Certificate) {
	c.bundle.Store(x509bundle.FromX509Authorities(c.cfg.TrustDomain, certs))
}

// SetSVID sets the agent SVID used for mTLS and drops the old connection so
// new calls present the new certificate.
func (c *Client) SetSVID(s *x509svid.SVID) {
	c.svid.Store(s)
	c.mu.Lock()
	old := c.conn
	c.conn = nil
	c.mu.Unlock()
	if old != nil {
		go func() {
			// Let in-flight calls on the old connection finish.
			time.Sleep(5 * time.Second)
			old.conn.Close()
		}()
	}
}

// Close closes the connection.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		err := c.conn.conn.Close()
		c.conn = nil
		return err
	}
	return nil
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (c *Client) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b := c.bundle.Load()
	if b == nil || td != c.cfg.TrustDomain {
		return nil, fmt.Errorf("client: no bundle for trust domain %q", td)
	}
	return b, nil
}

// GetX509SVID implements x509svid.Source.
func (c *Client) GetX509SVID() (*x509svid.SVID, error) {
	s := c.svid.Load()
	if s == nil {
		return nil, errors.New("client: no agent SVID yet")
	}
	return s, nil
}

func (c *Client) tlsConfig(mtls bool) *tls.Config {
	authorizer := tlsconfig.AuthorizeID(c.serverID)
	if c.bundle.Load() == nil && !c.cfg.InsecureBootstrap {
		// No bundle yet (DeferBundle): fail closed.
		return &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, //nolint:gosec // VerifyConnection refuses every server
			VerifyConnection: func(tls.ConnectionState) error { return errors.New("client: no trust bundle yet") }}
	}
	if c.bundle.Load() == nil {
		// Insecure bootstrap: accept any server certificate this once.
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12} //nolint:gosec // explicit, logged opt-in
	}
	if mtls {
		return tlsconfig.MTLSClientConfig(c, c, authorizer)
	}
	return tlsconfig.TLSClientConfig(c, authorizer)
}

var keepaliveParams = keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}

// node returns the shared mTLS channel. One whose last connection
// attempt failed is replaced by a new one, which tries at once (see
// channelRetry).
func (c *Client) node() (*channel, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && c.conn.failed() {
		c.conn.conn.Close()
		c.conn = nil
	}
	if c.conn == nil {
		ch, err := c.newChannel(c.tlsConfig(true))
		if err != nil {
			return nil, err
		}
		c.conn = ch
	}
	return c.conn, nil
}

// AttestResult is the outcome of attestation or renewal.
type AttestResult struct {
	Certs       []*x509.Certificate
	Bundle      []*x509.Certificate
	CanReattest bool
}

// Attest attests the node with collector and gets an SVID for key's CSR.
func (c *Client) Attest(ctx context.Context, collector attestors.NodeCollector, key crypto.Signer, csr []byte) (*AttestResult, error) {
	ch, err := c.newChannel(c.tlsConfig(false))
	if err != nil {
		return nil, err
	}
	defer ch.conn.Close()
	stream, err := apiv1.NewNodeClient(ch.conn).Attest(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: attest: %w", ch.explain(err))
	}
	return runAttest(ctx, stream, collector, key, csr, false)
}

// Renew renews the agent SVID over mTLS. collector may be nil for
// attestors that do not re-attest.
func (c *Client) Renew(ctx context.Context, collector attestors.NodeCollector, key crypto.Signer, csr []byte) (*AttestResult, error) {
	ch, err := c.node()
	if err != nil {
		return nil, err
	}
	stream, err := apiv1.NewNodeClient(ch.conn).RenewAgent(ctx)
	if err != nil {
		return nil, fmt.Errorf("client: renew: %w", ch.explain(err))
	}
	return runAttest(ctx, stream, collector, key, csr, true)
}

type attestClient interface {
	Send(*apiv1.AttestRequest) error
	Recv() (*apiv1.AttestResponse, error)
	CloseSend() error
}

func runAttest(ctx context.Context, stream attestClient, collector attestors.NodeCollector, key crypto.Signer, csr []byte, renewal bool) (*AttestResult, error) {
	params := &apiv1.AttestParams{Csr: csr}
	if collector != nil {
		payload, err := collector.Payload(ctx, attestors.CollectRequest{AgentKey: key.Public(), Renewal: renewal})
		if err != nil {
			return nil, fmt.Errorf("client: collect evidence: %w", err)
		}
		params.Data = &apiv1.AttestationData{Type: collector.Type(), Payload: payload}
	}
	if err := stream.Send(&apiv1.AttestRequest{Step: &apiv1.AttestRequest_Params{Params: params}}); err != nil {
		return nil, fmt.Errorf("client: send attestation: %w", sendError(stream, err))
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return nil, fmt.Errorf("client: attestation: %w", err)
		}
		if ch := resp.GetChallenge(); ch != nil {
			if collector == nil {
				return nil, errors.New("client: server sent a challenge but no attestor is configured")
			}
			answer, err := collector.Answer(ctx, ch)
			if err != nil {
				return nil, fmt.Errorf("client: answer challenge: %w", err)
			}
			if err := stream.Send(&apiv1.AttestRequest{Step: &apiv1.AttestRequest_ChallengeResponse{ChallengeResponse: answer}}); err != nil {
				return nil, fmt.Errorf("client: send challenge response: %w", sendError(stream, err))
			}
			continue
		}
		res := resp.GetResult()
		if res == nil {
			return nil, errors.New("client: empty attestation response")
		}
		_ = stream.CloseSend()
		certs, err := x509util.ParseChain(res.GetSvid().GetCertChain())
		if err != nil {
			return nil, fmt.Errorf("client: agent SVID: %w", err)
		}
		bundle, err := x509util.ParseChain(res.GetBundle().GetX509Authorities())
		if err != nil {
			return nil, fmt.Errorf("client: bundle: %w", err)
		}
		return &AttestResult{Certs: certs, Bundle: bundle, CanReattest: res.GetCanReattest()}, nil
	}
}

// sendError returns why a Send failed: io.EOF means the server ended the
// stream, and its status (a refusal, say) is what Recv returns.
func sendError(stream attestClient, err error) error {
	if !errors.Is(err, io.EOF) {
		return err
	}
	if _, rerr := stream.Recv(); rerr != nil && !errors.Is(rerr, io.EOF) {
		return rerr
	}
	return err
}

// Sync opens the entry push stream. A nil or empty req asks for a full
// snapshot; see apiv1.SyncRequest for resuming.
func (c *Client) Sync(ctx context.Context, req *apiv1.SyncRequest) (grpc.ServerStreamingClient[apiv1.SyncResponse], error) {
	ch, err := c.node()
	if err != nil {
		return nil, err
	}
	if req == nil {
		req = &apiv1.SyncRequest{}
	}
	stream, err := apiv1.NewNodeClient(ch.conn).Sync(ctx, req)
	if err != nil {
		return nil, ch.explain(err)
	}
	return stream, nil
}

// BatchSign signs workload CSRs.
func (c *Client) BatchSign(ctx context.Context, reqs []*apiv1.SVIDRequest) ([]*apiv1.SVIDResult, error) {
	ch, err := c.node()
	if err != nil {
		return nil, err
	}
	resp, err := apiv1.NewNodeClient(ch.conn).BatchSignX509SVID(ctx, &apiv1.BatchSignX509SVIDRequest{Requests: reqs})
	if err != nil {
		return nil, fmt.Errorf("client: batch sign: %w", ch.explain(err))
	}
	if len(resp.GetResults()) != len(reqs) {
		return nil, fmt.Errorf("client: batch sign: %d results for %d requests", len(resp.GetResults()), len(reqs))
	}
	return resp.GetResults(), nil
}
