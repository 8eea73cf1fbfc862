package jwtsigner

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// algorithm maps a configured algorithm name to its JOSE value.
func algorithm(name string) (jose.SignatureAlgorithm, error) {
	switch name {
	case ES256:
		return jose.ES256, nil
	case ES384:
		return jose.ES384, nil
	case RS256:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("unknown algorithm %q (want %s, %s or %s)", name, ES256, ES384, RS256)
}

// generate makes a new key for alg.
func generate(alg string) (crypto.Signer, error) {
	switch alg {
	case ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case ES384:
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("unknown algorithm %q", alg)
}

// algorithmOf returns the algorithm a key signs with, refusing keys the
// signer does not use.
func algorithmOf(k crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("unsupported ECDSA curve %s", k.Curve.Params().Name)
	case *rsa.PrivateKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > 4096 {
			return "", fmt.Errorf("unsupported RSA key size %d bits", bits)
		}
		return jose.RS256, nil
	}
	return "", fmt.Errorf("unsupported key type %T", k)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
