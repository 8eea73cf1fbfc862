package awsiid

import (
	"bytes"
	"context"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/registration"
)

// MaxPayloadSize bounds the agent's payload.
const MaxPayloadSize = 64 << 10

// Payload is what the agent sends: the three IMDS answers as served.
type Payload struct {
	// Document is /latest/dynamic/instance-identity/document.
	Document string `json:"document"`
	// RSA2048 is /latest/dynamic/instance-identity/rsa2048: base64 PKCS#7
	// SignedData embedding the document.
	RSA2048 string `json:"rsa2048,omitempty"`
	// Signature is /latest/dynamic/instance-identity/signature: base64
	// RSA-SHA256 over the document with the region's RSA-1024 key.
	Signature string `json:"signature,omitempty"`
}

// Document holds the identity document fields the attestor uses.
type Document struct {
	AccountID        string    `json:"accountId"`
	Architecture     string    `json:"architecture"`
	AvailabilityZone string    `json:"availabilityZone"`
	ImageID          string    `json:"imageId"`
	InstanceID       string    `json:"instanceId"`
	InstanceType     string    `json:"instanceType"`
	PendingTime      time.Time `json:"pendingTime"`
	PrivateIP        string    `json:"privateIp"`
	Region           string    `json:"region"`
	Version          string    `json:"version"`
}

var (
	instanceRE = lazyRegexp(`^i-[0-9a-f]{8,17}$`)
	regionRE   = lazyRegexp(`^[a-z]{2,4}(-[a-z]+)+-[0-9]{1,2}$`)
	azRE       = lazyRegexp(`^[a-z0-9-]{1,32}$`)
	imageRE    = lazyRegexp(`^ami-[0-9a-f]{8,17}$`)
	typeRE     = lazyRegexp(`^[a-z0-9][a-z0-9.-]{0,63}$`)
)

func (d *Document) validate() error {
	switch {
	case !accountRE().MatchString(d.AccountID):
		return fmt.Errorf("awsiid: document accountId %q is malformed", d.AccountID)
	case !instanceRE().MatchString(d.InstanceID):
		return fmt.Errorf("awsiid: document instanceId %q is malformed", d.InstanceID)
	case !regionRE().MatchString(d.Region):
		return fmt.Errorf("awsiid: document region %q is malformed", d.Region)
	case !azRE().MatchString(d.AvailabilityZone):
		return fmt.Errorf("awsiid: document availabilityZone %q is malformed", d.AvailabilityZone)
	case !imageRE().MatchString(d.ImageID):
		return fmt.Errorf("awsiid: document imageId %q is malformed", d.ImageID)
	case !typeRE().MatchString(d.InstanceType):
		return fmt.Errorf("awsiid: document instanceType %q is malformed", d.InstanceType)
	}
	return nil
}

// Option configures a Verifier.
type Option interface{ apply(*Verifier) }

type optionFunc func(*Verifier)

func (f optionFunc) apply(v *Verifier) { f(v) }

// WithRegionCertificates replaces the embedded regional certificates; for
// tests. Either map may be nil to keep the embedded one.
func WithRegionCertificates(rsa2048, rsa1024 map[string]*x509.Certificate) Option {
	return optionFunc(func(v *Verifier) {
		if rsa2048 != nil {
			v.rsa2048 = rsa2048
		}
		if rsa1024 != nil {
			v.rsa1024 = rsa1024
		}
	})
}

// Verifier is the server half of the aws_iid attestor.
type Verifier struct {
	log      *slog.Logger
	cfg      ServerConfig
	accounts map[string]bool
	rsa2048  map[string]*x509.Certificate
	rsa1024  map[string]*x509.Certificate
	ec2      InstanceDescriber // nil unless describe_instances is on
}

var _ attestors.NodeVerifier = (*Verifier)(nil)

// NewVerifier validates cfg and returns a verifier. With
// describe_instances on, it needs WithInstanceDescriber (the server builds
// one with package awsiid/ec2describe).
func NewVerifier(cfg ServerConfig, log *slog.Logger, opts ...Option) (*Verifier, error) {
	accounts, err := cfg.accounts()
	if err != nil {
		return nil, err
	}
	if cfg.EC2Endpoint != "" && !cfg.DescribeInstances {
		return nil, errors.New("awsiid: config: ec2_endpoint is set but describe_instances is off")
	}
	if log == nil {
		log = slog.Default()
	}
	v := &Verifier{log: log, cfg: cfg, accounts: accounts}
	for _, o := range opts {
		o.apply(v)
	}
	if v.rsa2048 == nil || v.rsa1024 == nil {
		embedded, err := embeddedCerts()
		if err != nil {
			return nil, err
		}
		if v.rsa2048 == nil {
			v.rsa2048 = embedded.rsa2048
		}
		if v.rsa1024 == nil {
			v.rsa1024 = embedded.rsa1024
		}
	}
	if cfg.DescribeInstances && v.ec2 == nil {
		return nil, errors.New("awsiid: describe_instances is on but no EC2 client was given (WithInstanceDescriber)")
	}
	return v, nil
}

// Type returns "aws_iid".
func (v *Verifier) Type() string { return Type }

// Verify checks the identity document. The result is not re-attestable:
// an instance attests once (trust on first use) until an operator evicts
// it, which the server core enforces by refusing a second agent record.
func (v *Verifier) Verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, error) {
	res, doc, err := v.verify(ctx, req)
	if err != nil {
		v.log.Warn("aws_iid attestation rejected", "instance_id", doc.InstanceID, "err", err)
		return attestors.Result{}, err
	}
	v.log.Info("aws_iid attestation verified", "agent_id", res.AgentID.String())
	return res, nil
}

func (v *Verifier) verify(ctx context.Context, req attestors.VerifyRequest) (attestors.Result, Document, error) {
	var doc Document
	raw, err := v.VerifyPayload(req.Payload)
	if err != nil {
		return attestors.Result{}, doc, err
	}
	// Every identity field comes from the verified bytes.
	if err := json.Unmarshal(raw, &doc); err != nil {
		return attestors.Result{}, doc, fmt.Errorf("awsiid: verified document: %w", err)
	}
	if err := doc.validate(); err != nil {
		return attestors.Result{}, doc, err
	}
	if v.accounts != nil && !v.accounts[doc.AccountID] {
		return attestors.Result{}, doc, fmt.Errorf("awsiid: account %s is not in the allow-list", doc.AccountID)
	}
	id, err := spiffeid.FromSegments(req.TrustDomain, "agent", Type, doc.AccountID, doc.Region, doc.InstanceID)
	if err != nil {
		return attestors.Result{}, doc, fmt.Errorf("awsiid: agent ID: %w", err)
	}
	if req.Renewal && id != req.CurrentID {
		return attestors.Result{}, doc, fmt.Errorf("awsiid: renewal: document yields %q, agent is %q", id, req.CurrentID)
	}
	sel := func(k, val string) registration.Selector {
		return registration.Selector{Type: Type, Value: k + ":" + val}
	}
	sels := []registration.Selector{
		sel("account_id", doc.AccountID),
		sel("region", doc.Region),
		sel("az", doc.AvailabilityZone),
		sel("instance_id", doc.InstanceID),
		sel("image_id", doc.ImageID),
		sel("instance_type", doc.InstanceType),
	}
	if v.cfg.DescribeInstances {
		more, err := v.describe(ctx, &doc)
		if err != nil {
			return attestors.Result{}, doc, err
		}
		sels = append(sels, more...)
	}
	return attestors.Result{
		AgentID:     id,
		Selectors:   registration.SortSelectors(sels),
		CanReattest: false,
		Evidence: map[string]string{
			"instance_id": doc.InstanceID,
			"account_id":  doc.AccountID,
			"region":      doc.Region,
		},
	}, doc, nil
}

// VerifyPayload decodes the agent's payload and returns the document bytes
// whose signature verified: the /rsa2048 PKCS#7 when present (its content
// must equal the document byte for byte), otherwise, if allowed, the
// /signature over the document.
func (v *Verifier) VerifyPayload(b []byte) ([]byte, error) {
	if len(b) > MaxPayloadSize {
		return nil, fmt.Errorf("awsiid: payload is %d bytes, more than %d", len(b), MaxPayloadSize)
	}
	var p Payload
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("awsiid: payload: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("awsiid: payload: trailing data")
	}
	switch {
	case p.RSA2048 != "":
		return v.verifyRSA2048(p)
	case p.Signature != "" && v.cfg.AllowRSA1024Signature:
		return v.verifySignature(p)
	case p.Signature != "":
		return nil, errors.New("awsiid: payload has no rsa2048 PKCS#7 and allow_rsa1024_signature is off")
	default:
		return nil, errors.New("awsiid: payload has no signature")
	}
}

func decodeB64(s string) ([]byte, error) {
	return base64.StdEncoding.DecodeString(strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == ' ' || r == '\t' {
			return -1
		}
		return r
	}, s))
}

// peekRegion reads the region from bytes not yet verified, only to choose
// the certificate that must then verify them.
func peekRegion(doc []byte) (string, error) {
	var r struct {
		Region string `json:"region"`
	}
	if err := json.Unmarshal(doc, &r); err != nil {
		return "", fmt.Errorf("awsiid: document: %w", err)
	}
	if !regionRE().MatchString(r.Region) {
		return "", fmt.Errorf("awsiid: document region %q is malformed", r.Region)
	}
	return r.Region, nil
}

func regionKey(certs map[string]*x509.Certificate, region string) (*rsa.PublicKey, error) {
	c, ok := certs[region]
	if !ok {
		return nil, fmt.Errorf("awsiid: unknown region %q: no certificate for it", region)
	}
	pub, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("awsiid: region %s certificate has no RSA key", region)
	}
	return pub, nil
}

func (v *Verifier) verifyRSA2048(p Payload) ([]byte, error) {
	der, err := decodeB64(p.RSA2048)
	if err != nil {
		return nil, fmt.Errorf("awsiid: rsa2048: %w", err)
	}
	msg, err := parsePKCS7(der)
	if err != nil {
		return nil, err
	}
	if p.Document != "" && !bytes.Equal([]byte(p.Document), msg.content) {
		return nil, errors.New("awsiid: document differs from the one signed in the PKCS#7")
	}
	region, err := peekRegion(msg.content)
	if err != nil {
		return nil, err
	}
	pub, err := regionKey(v.rsa2048, region)
	if err != nil {
		return nil, err
	}
	if err := msg.verify(pub); err != nil {
		return nil, err
	}
	return msg.content, nil
}

func (v *Verifier) verifySignature(p Payload) ([]byte, error) {
	sig, err := decodeB64(p.Signature)
	if err != nil {
		return nil, fmt.Errorf("awsiid: signature: %w", err)
	}
	doc := []byte(p.Document)
	region, err := peekRegion(doc)
	if err != nil {
		return nil, err
	}
	pub, err := regionKey(v.rsa1024, region)
	if err != nil {
		return nil, err
	}
	if err := verifyRSA1024(pub, doc, sig); err != nil {
		return nil, err
	}
	return doc, nil
}
