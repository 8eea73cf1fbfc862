package tpm

import (
	"bytes"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Limits on the EK CRL directory. Manufacturer CRLs are kilobytes to a few
// megabytes.
const (
	maxCRLFileSize = 32 << 20
	// crlClockSkew is how far in the future a CRL's thisUpdate may be.
	crlClockSkew = 5 * time.Minute
)

// errRevoked marks an EK certificate (or a CA certificate of its chain)
// that a configured CRL revokes. A revoked EK is refused even when its hash
// is in ek_hashes.
var errRevoked = errors.New("revoked")

// CRL extensions this package understands.
var (
	oidCRLNumber         = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRLIndicator = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistPoint  = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidAuthorityKeyID    = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidCertIssuer        = asn1.ObjectIdentifier{2, 5, 29, 29}
)

// crlSet holds the revocations of the EK CRLs, by the CA that signed them.
type crlSet struct {
	byIssuer map[string]*issuerCRL // key: caKey of the signing CA
}

// issuerCRL is what one CA's CRLs say.
type issuerCRL struct {
	ca      *x509.Certificate
	files   []string
	revoked map[string]bool // serial numbers, decimal
	// nextUpdate is the earliest nextUpdate of the CA's CRLs (zero: none
	// sets one); past it, the CA's revocation status is unknown.
	nextUpdate time.Time
}

// caKey identifies a CA by its subject and public key, so that a chain
// built with another copy of the CA certificate still finds its CRL.
func caKey(c *x509.Certificate) string {
	return string(c.RawSubject) + "\x00" + string(c.RawSubjectPublicKeyInfo)
}

// ParseCRLFile parses the contents of one file of ek_crl_dir: PEM holding
// one or more "X509 CRL" blocks, or a single DER CRL. It checks structure
// only, not signatures or dates.
func ParseCRLFile(b []byte) ([]*x509.RevocationList, error) {
	if len(b) > maxCRLFileSize {
		return nil, fmt.Errorf("%d bytes, more than %d", len(b), maxCRLFileSize)
	}
	var ders [][]byte
	if bytes.Contains(b, []byte("-----BEGIN")) {
		rest := b
		for {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			if blk.Type != "X509 CRL" {
				return nil, fmt.Errorf("PEM block %q is not an X509 CRL", blk.Type)
			}
			ders = append(ders, blk.Bytes)
		}
		if len(bytes.TrimSpace(rest)) != 0 {
			return nil, errors.New("data after the last PEM block")
		}
	} else {
		ders = append(ders, b)
	}
	if len(ders) == 0 {
		return nil, errors.New("holds no CRL")
	}
	crls := make([]*x509.RevocationList, 0, len(ders))
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, err
		}
		if len(crl.Raw) != len(der) {
			return nil, fmt.Errorf("%d trailing bytes after the CRL", len(der)-len(crl.Raw))
		}
		crls = append(crls, crl)
	}
	return crls, nil
}

// loadCRLDir loads every CRL file (.crl, .pem, .der) of dir. Each CRL must
// be a complete (not delta, not indirect) CRL signed by one of cas and
// current at now; anything else is an error that stops start-up.
func loadCRLDir(dir string, cas []*x509.Certificate, now time.Time) (*crlSet, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("tpm: config: ek_crl_dir: %w", err)
	}
	s := &crlSet{byIssuer: map[string]*issuerCRL{}}
	n := 0
	for _, e := range entries {
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".crl" && ext != ".pem" && ext != ".der") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		b, err := readLimited(path, maxCRLFileSize)
		if err != nil {
			return nil, fmt.Errorf("tpm: config: ek_crl_dir: %w", err)
		}
		if err := s.add(path, b, cas, now); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("tpm: config: ek_crl_dir %s holds no CRL files (.crl, .pem, .der)", dir)
	}
	return s, nil
}

// add checks the CRLs of one file and records their revocations.
func (s *crlSet) add(path string, b []byte, cas []*x509.Certificate, now time.Time) error {
	crls, err := ParseCRLFile(b)
	if err != nil {
		return fmt.Errorf("tpm: config: ek_crl_dir: %s: %w", path, err)
	}
	for _, crl := range crls {
		ca, err := checkCRL(crl, cas, now)
		if err != nil {
			return fmt.Errorf("tpm: config: ek_crl_dir: %s: %w", path, err)
		}
		k := caKey(ca)
		ic := s.byIssuer[k]
		if ic == nil {
			ic = &issuerCRL{ca: ca, revoked: map[string]bool{}}
			s.byIssuer[k] = ic
		}
		if !slices.Contains(ic.files, path) {
			ic.files = append(ic.files, path)
		}
		for _, e := range crl.RevokedCertificateEntries {
			ic.revoked[e.SerialNumber.String()] = true
		}
		if !crl.NextUpdate.IsZero() && (ic.nextUpdate.IsZero() || crl.NextUpdate.Before(ic.nextUpdate)) {
			ic.nextUpdate = crl.NextUpdate
		}
	}
	return nil
}

// checkCRL returns the CA among cas that signed crl, after checking that
// the CRL is current at now and is a complete CRL of that CA's own
// certificates.
func checkCRL(crl *x509.RevocationList, cas []*x509.Certificate, now time.Time) (*x509.Certificate, error) {
	var signer *x509.Certificate
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			signer = ca
			break
		}
	}
	if signer == nil {
		return nil, fmt.Errorf("CRL of %q is not signed by a certificate in ek_ca_dir", crl.Issuer.String())
	}
	if crl.ThisUpdate.After(now.Add(crlClockSkew)) {
		return nil, fmt.Errorf("CRL of %q is not valid before %s (thisUpdate)", crl.Issuer.String(), crl.ThisUpdate.UTC().Format(time.RFC3339))
	}
	if !crl.NextUpdate.IsZero() && now.After(crl.NextUpdate) {
		return nil, fmt.Errorf("CRL of %q expired at %s (nextUpdate); fetch the current one", crl.Issuer.String(), crl.NextUpdate.UTC().Format(time.RFC3339))
	}
	for _, ext := range crl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return nil, fmt.Errorf("CRL of %q is a delta CRL; give the complete CRL", crl.Issuer.String())
		case ext.Critical && !ext.Id.Equal(oidIssuingDistPoint) && !ext.Id.Equal(oidCRLNumber) && !ext.Id.Equal(oidAuthorityKeyID):
			return nil, fmt.Errorf("CRL of %q has an unsupported critical extension %v", crl.Issuer.String(), ext.Id)
		}
	}
	for _, e := range crl.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			switch {
			case ext.Id.Equal(oidCertIssuer):
				return nil, fmt.Errorf("CRL of %q is an indirect CRL (entries for other issuers); not supported", crl.Issuer.String())
			case ext.Critical:
				return nil, fmt.Errorf("CRL of %q: entry %s has an unsupported critical extension %v", crl.Issuer.String(), e.SerialNumber, ext.Id)
			}
		}
	}
	return signer, nil
}

// check refuses chains in which a certificate is revoked by its issuer's
// CRL, and chains through a CA whose CRLs are past their nextUpdate.
func (s *crlSet) check(chains [][]*x509.Certificate, now time.Time) error {
	if s == nil {
		return nil
	}
	for _, chain := range chains {
		for i := 0; i+1 < len(chain); i++ {
			cert, issuer := chain[i], chain[i+1]
			ic := s.byIssuer[caKey(issuer)]
			if ic == nil {
				continue
			}
			if !ic.nextUpdate.IsZero() && now.After(ic.nextUpdate) {
				return fmt.Errorf("tpm: EK CRL of %q (%s) expired at %s: revocation status unknown; put a current CRL in ek_crl_dir and restart the server",
					issuer.Subject.String(), strings.Join(ic.files, ", "), ic.nextUpdate.UTC().Format(time.RFC3339))
			}
			if ic.revoked[cert.SerialNumber.String()] {
				what := "EK certificate"
				if i > 0 {
					what = fmt.Sprintf("EK CA certificate %q", cert.Subject.String())
				}
				return fmt.Errorf("tpm: %s (serial %s) is %w by %q (%s)", what, cert.SerialNumber, errRevoked, issuer.Subject.String(), strings.Join(ic.files, ", "))
			}
		}
	}
	return nil
}

// readLimited reads at most limit bytes of path; larger files are errors.
func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, nil
}
