// Package x509util holds small certificate helpers shared by server and
// agent: parsing DER chains from the wire and concatenating DER for the
// Workload API.
package x509util

import (
	"crypto/x509"
	"errors"
	"fmt"
)

// MaxChain bounds the certificates accepted in one chain or bundle.
const MaxChain = 64

// ParseChain parses DER certificates from the wire; empty is an error.
func ParseChain(ders [][]byte) ([]*x509.Certificate, error) {
	if len(ders) == 0 {
		return nil, errors.New("x509util: empty certificate list")
	}
	if len(ders) > MaxChain {
		return nil, fmt.Errorf("x509util: more than %d certificates", MaxChain)
	}
	out := make([]*x509.Certificate, len(ders))
	for i, d := range ders {
		c, err := x509.ParseCertificate(d)
		if err != nil {
			return nil, fmt.Errorf("x509util: certificate %d: %w", i, err)
		}
		out[i] = c
	}
	return out, nil
}

// ConcatDER concatenates the certificates' DER encodings.
func ConcatDER(certs []*x509.Certificate) []byte {
	var n int
	for _, c := range certs {
		n += len(c.Raw)
	}
	out := make([]byte, 0, n)
	for _, c := range certs {
		out = append(out, c.Raw...)
	}
	return out
}

// DERs returns each certificate's DER encoding.
func DERs(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}
