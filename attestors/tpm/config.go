package tpm

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	tpmdev "github.com/hallmarkid/hallmark/tpm"
)

// Defaults.
const (
	DefaultPCRBank      = "sha256"
	DefaultQuoteTimeout = 10 * time.Second
)

// DefaultPCRs is the quoted selection when none is configured: the
// firmware PCRs.
var DefaultPCRs = []int{0, 1, 2, 3, 4, 5, 6, 7}

// ServerConfig configures the Verifier (node_attestor "tpm" on the server).
// At least one of EKCADir and EKHashes is required.
type ServerConfig struct {
	// EKCADir holds the TPM manufacturers' CA certificates (PEM or DER
	// files ending in .pem, .crt, .cer or .der); self-signed ones are roots,
	// others intermediates. It must hold at least one root.
	EKCADir string `hcl:"ek_ca_dir,optional"`
	// EKCRLDir holds CRLs (PEM or DER files ending in .crl, .pem or .der)
	// signed by certificates of EKCADir. An EK certificate (or a CA
	// certificate of its chain) they revoke is refused, even when its EK is
	// in ek_hashes. Every CRL must verify and be current at start-up; a CA
	// whose CRLs pass their nextUpdate refuses every EK under it until a
	// current CRL is installed and the server restarted.
	EKCRLDir string `hcl:"ek_crl_dir,optional"`
	// EKHashes allow-lists EKs by hex SHA-256 of the EK public key (PKIX
	// DER), for TPMs without an EK certificate.
	EKHashes []string `hcl:"ek_hashes,optional"`
	// PCRBank is the bank quoted: sha256 (default), sha384, sha512, or
	// sha1 with AllowSHA1PCRBank.
	PCRBank string `hcl:"pcr_bank,optional"`
	// AllowSHA1PCRBank permits pcr_bank = "sha1", for TPMs whose firmware
	// extends only that bank. SHA-1 is broken for collisions: PCR values and
	// event logs in it prove less.
	AllowSHA1PCRBank bool `hcl:"allow_sha1_pcr_bank,optional"`
	// PCRs is the quoted selection (default 0-7).
	PCRs []int `hcl:"pcrs,optional"`
	// PCRPolicy holds golden values; each pcr must be in PCRs.
	PCRPolicy []PCRPolicy `hcl:"pcr_policy,block"`
	// RequireSecureBoot rejects machines whose event log does not show
	// Secure Boot enabled (needs PCR 7 quoted and an event log).
	RequireSecureBoot bool `hcl:"require_secure_boot,optional"`
	// RequireEventLog rejects agents that send no event log.
	RequireEventLog bool `hcl:"require_event_log,optional"`
	// QuoteTimeout bounds the challenge round (default 10s).
	QuoteTimeout string `hcl:"quote_timeout,optional"`
	// ReattestInterval is how often an attested agent must re-attest,
	// independent of its SVID TTL; empty means at every renewal.
	ReattestInterval string `hcl:"reattest_interval,optional"`

	// Now returns the current time; nil means time.Now. Not from HCL.
	Now func() time.Time
}

// PCRPolicy lists the allowed values of one PCR in the configured bank:
//
//	pcr_policy {
//	  pcr    = 7
//	  values = ["<hex>", ...]
//	}
type PCRPolicy struct {
	PCR    int      `hcl:"pcr"`
	Values []string `hcl:"values"`
}

// AgentConfig configures the Collector (node_attestor "tpm" on the agent).
type AgentConfig struct {
	// Device is "/dev/tpmrm0" (default), another character device,
	// "unix:/path/to/swtpm.sock" or "tcp:host:port".
	Device string `hcl:"device,optional"`
	// AKType is "ecc" (default, P-256) or "rsa" (2048).
	AKType string `hcl:"ak_type,optional"`
	// EKType is "rsa" (default) or "ecc"; the agent ID derives from the EK.
	EKType string `hcl:"ek_type,optional"`
	// EventLog is the measured-boot log path (default
	// /sys/kernel/security/tpm0/binary_bios_measurements; absent is fine;
	// "none" sends no log).
	EventLog string `hcl:"event_log,optional"`
}

// policy is a validated ServerConfig.
type policy struct {
	bank         string
	pcrs         []int // sorted
	golden       map[int]map[string]bool
	ekHashes     map[string]bool
	roots        *x509.CertPool
	inters       *x509.CertPool
	crls         *crlSet // nil without ek_crl_dir
	quoteTimeout time.Duration
	reattest     time.Duration

	requireSecureBoot bool
	requireLog        bool
}

func (cfg *ServerConfig) validate() (*policy, error) {
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	p := &policy{
		bank:              cfg.PCRBank,
		golden:            map[int]map[string]bool{},
		ekHashes:          map[string]bool{},
		requireSecureBoot: cfg.RequireSecureBoot,
		requireLog:        cfg.RequireEventLog || cfg.RequireSecureBoot,
	}
	if p.bank == "" {
		p.bank = DefaultPCRBank
	}
	_, bankHash, err := tpmdev.Bank(p.bank)
	if err != nil {
		return nil, fmt.Errorf("tpm: config: pcr_bank: %w", err)
	}
	if p.bank == "sha1" && !cfg.AllowSHA1PCRBank {
		return nil, errors.New(`tpm: config: pcr_bank "sha1" needs allow_sha1_pcr_bank = true: SHA-1 is broken for collisions, so SHA-1 PCR values and event logs prove less; quote sha256 if the TPM's firmware extends it`)
	}
	p.pcrs = slices.Clone(cfg.PCRs)
	if len(p.pcrs) == 0 {
		p.pcrs = slices.Clone(DefaultPCRs)
	}
	slices.Sort(p.pcrs)
	for i, pcr := range p.pcrs {
		if pcr < 0 || pcr > tpmdev.MaxPCR {
			return nil, fmt.Errorf("tpm: config: pcrs: PCR %d out of range 0-%d", pcr, tpmdev.MaxPCR)
		}
		if i > 0 && p.pcrs[i-1] == pcr {
			return nil, fmt.Errorf("tpm: config: pcrs: PCR %d listed twice", pcr)
		}
	}
	for _, pp := range cfg.PCRPolicy {
		if !slices.Contains(p.pcrs, pp.PCR) {
			return nil, fmt.Errorf("tpm: config: pcr_policy: PCR %d is not in pcrs %v", pp.PCR, p.pcrs)
		}
		if _, dup := p.golden[pp.PCR]; dup {
			return nil, fmt.Errorf("tpm: config: pcr_policy: PCR %d has two blocks", pp.PCR)
		}
		if len(pp.Values) == 0 {
			return nil, fmt.Errorf("tpm: config: pcr_policy: PCR %d has no values", pp.PCR)
		}
		set := map[string]bool{}
		for _, v := range pp.Values {
			b, err := hex.DecodeString(v)
			if err == nil && len(b) == 20 && p.bank != "sha1" {
				return nil, fmt.Errorf("tpm: config: pcr_policy: PCR %d value %q is a SHA-1 value, but pcr_bank is %s (the sha1 bank needs pcr_bank = \"sha1\" and allow_sha1_pcr_bank = true)", pp.PCR, v, p.bank)
			}
			if err != nil || len(b) != bankHash.Size() {
				return nil, fmt.Errorf("tpm: config: pcr_policy: PCR %d value %q is not %d hex bytes", pp.PCR, v, bankHash.Size())
			}
			set[hex.EncodeToString(b)] = true
		}
		p.golden[pp.PCR] = set
	}
	if cfg.RequireSecureBoot && !slices.Contains(p.pcrs, 7) {
		return nil, errors.New("tpm: config: require_secure_boot needs PCR 7 in pcrs")
	}
	for _, h := range cfg.EKHashes {
		b, err := hex.DecodeString(h)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("tpm: config: ek_hashes: %q is not a hex SHA-256", h)
		}
		p.ekHashes[hex.EncodeToString(b)] = true
	}
	if cfg.EKCADir != "" {
		cas, err := loadCADir(cfg.EKCADir)
		if err != nil {
			return nil, err
		}
		p.roots, p.inters = cas.roots, cas.inters
		if cfg.EKCRLDir != "" {
			if p.crls, err = loadCRLDir(cfg.EKCRLDir, cas.all, now()); err != nil {
				return nil, err
			}
		}
	} else if cfg.EKCRLDir != "" {
		return nil, errors.New("tpm: config: ek_crl_dir needs ek_ca_dir: CRLs must be signed by a configured EK CA")
	}
	if p.roots == nil && len(p.ekHashes) == 0 {
		return nil, errors.New("tpm: config: set ek_ca_dir or ek_hashes (or both)")
	}
	p.quoteTimeout = DefaultQuoteTimeout
	if cfg.QuoteTimeout != "" {
		if p.quoteTimeout, err = time.ParseDuration(cfg.QuoteTimeout); err != nil || p.quoteTimeout <= 0 || p.quoteTimeout > 5*time.Minute {
			return nil, fmt.Errorf("tpm: config: quote_timeout %q: want a duration in (0, 5m]", cfg.QuoteTimeout)
		}
	}
	if cfg.ReattestInterval != "" {
		if p.reattest, err = time.ParseDuration(cfg.ReattestInterval); err != nil || p.reattest < time.Minute {
			return nil, fmt.Errorf("tpm: config: reattest_interval %q: want a duration of at least 1m", cfg.ReattestInterval)
		}
	}
	return p, nil
}

// caSet is the content of ek_ca_dir.
type caSet struct {
	roots, inters *x509.CertPool
	all           []*x509.Certificate
}

// loadCADir loads manufacturer CA certificates. The directory must hold at
// least one self-signed root: EK certificates chain to roots of this
// directory only, so without one every EK certificate would be refused.
func loadCADir(dir string) (*caSet, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tpm: config: ek_ca_dir: %w", err)
	}
	s := &caSet{roots: x509.NewCertPool(), inters: x509.NewCertPool()}
	var nroots int
	var interNames []string
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".pem" && ext != ".crt" && ext != ".cer" && ext != ".der") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("tpm: config: ek_ca_dir: %w", err)
		}
		var ders [][]byte
		if bytes := b; strings.Contains(string(bytes), "-----BEGIN") {
			for {
				var blk *pem.Block
				blk, bytes = pem.Decode(bytes)
				if blk == nil {
					break
				}
				if blk.Type == "CERTIFICATE" {
					ders = append(ders, blk.Bytes)
				}
			}
		} else {
			ders = append(ders, b)
		}
		if len(ders) == 0 {
			return nil, fmt.Errorf("tpm: config: ek_ca_dir: %s holds no certificate", path)
		}
		for _, der := range ders {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				return nil, fmt.Errorf("tpm: config: ek_ca_dir: %s: %w", path, err)
			}
			if !c.IsCA {
				return nil, fmt.Errorf("tpm: config: ek_ca_dir: %s: %q is not a CA certificate", path, c.Subject)
			}
			if c.CheckSignatureFrom(c) == nil && string(c.RawIssuer) == string(c.RawSubject) {
				s.roots.AddCert(c)
				nroots++
			} else {
				s.inters.AddCert(c)
				interNames = append(interNames, fmt.Sprintf("%q", c.Subject.String()))
			}
			s.all = append(s.all, c)
		}
	}
	if len(s.all) == 0 {
		return nil, fmt.Errorf("tpm: config: ek_ca_dir %s holds no certificates", dir)
	}
	if nroots == 0 {
		return nil, fmt.Errorf("tpm: config: ek_ca_dir %s holds no self-signed root certificate, only intermediates (%s): EK certificates must chain to a root in this directory, so every one would be refused; add the manufacturer's root CA", dir, strings.Join(interNames, ", "))
	}
	return s, nil
}
