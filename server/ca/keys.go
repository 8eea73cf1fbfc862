package ca

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
)

// CA key types accepted in Config.KeyType.
const (
	KeyTypeECP256  = "ec-p256"
	KeyTypeECP384  = "ec-p384"
	KeyTypeRSA2048 = "rsa-2048"
)

// Bounds on RSA moduli accepted from CSRs and SVID parameters.
const (
	minRSABits = 2048
	maxRSABits = 4096
)

// generateKey makes a new CA key of the given type.
func generateKey(keyType string) (crypto.Signer, error) {
	switch keyType {
	case KeyTypeECP256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case KeyTypeECP384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case KeyTypeRSA2048:
		return rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("unknown key type %q (want %s, %s or %s)", keyType, KeyTypeECP256, KeyTypeECP384, KeyTypeRSA2048)
	}
}

// keyTypeOf names the type of a CA signing key, or returns an error for a
// key the CA refuses to sign with.
func keyTypeOf(k crypto.Signer) (string, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return KeyTypeECP256, nil
		case elliptic.P384():
			return KeyTypeECP384, nil
		}
		return "", fmt.Errorf("unsupported CA key curve %s", k.Curve.Params().Name)
	case *rsa.PrivateKey:
		bits := k.N.BitLen()
		if bits < minRSABits || bits > maxRSABits {
			return "", fmt.Errorf("unsupported CA RSA key size %d bits", bits)
		}
		return fmt.Sprintf("rsa-%d", bits), nil
	default:
		return "", fmt.Errorf("unsupported CA key type %T", k)
	}
}

// validatePublicKey checks a subject public key the CA is asked to certify:
// RSA 2048–4096 bits with a sane exponent, ECDSA on P-256 or P-384 with a
// valid point, or Ed25519. Anything else is refused.
func validatePublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return errors.New("empty RSA public key")
		}
		bits := k.N.BitLen()
		if bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits is too small (minimum %d)", bits, minRSABits)
		}
		if bits > maxRSABits {
			return fmt.Errorf("RSA key of %d bits is too large (maximum %d)", bits, maxRSABits)
		}
		if k.E < 3 || k.E%2 == 0 {
			return fmt.Errorf("RSA public exponent %d is invalid", k.E)
		}
		return nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return errors.New("empty ECDSA public key")
		}
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return fmt.Errorf("ECDSA curve %s is not allowed (want P-256 or P-384)", k.Curve.Params().Name)
		}
		// ECDH validates that the point is on the curve and not infinity.
		if _, err := k.ECDH(); err != nil {
			return fmt.Errorf("invalid ECDSA public key: %v", err)
		}
		return nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 public key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return nil
	case nil:
		return errors.New("missing or unsupported public key algorithm")
	default:
		return fmt.Errorf("unsupported public key type %T", pub)
	}
}

// subjectKeyID computes a key identifier per RFC 7093 section 2 method 1:
// the leftmost 160 bits of the SHA-256 of the subjectPublicKey BIT STRING.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// serialLimit is 2^128: serials are uniformly random in [1, 2^128).
var serialLimit = new(big.Int).Lsh(big.NewInt(1), 128)

// randomSerial returns a positive random serial number of up to 128 bits.
func randomSerial() (*big.Int, error) {
	for {
		n, err := rand.Int(rand.Reader, serialLimit)
		if err != nil {
			return nil, fmt.Errorf("ca: serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
