package tpm

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// AK is an attestation key: a restricted signing key created under our
// storage root key. Its private part is wrapped by the TPM and useless
// elsewhere.
type AK struct {
	// Alg is the key algorithm.
	Alg KeyAlg
	// Public is the AK's TPMT_PUBLIC, marshalled (what the server checks).
	Public []byte
	// Name is the AK's TPM name (nameAlg || digest of Public).
	Name []byte

	public  tpm2.TPM2BPublic
	private tpm2.TPM2BPrivate
}

// AKTemplate returns the template for a restricted, sign-only, fixedTPM,
// fixedParent, sensitiveDataOrigin AK: ECDSA P-256/SHA-256 or
// RSASSA-2048/SHA-256.
func AKTemplate(alg KeyAlg) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	}
	switch alg {
	case ECC, "":
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme: tpm2.TPMTECCScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				CurveID: tpm2.TPMECCNistP256,
				KDF:     tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case RSA:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: tpm2.TPMTSymDefObject{Algorithm: tpm2.TPMAlgNull},
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("tpm: unknown AK algorithm %q (want ecc or rsa)", alg)
}

// srk creates our storage root key (ECC P-256, TCG template) in the owner
// hierarchy. It is deterministic, so AKs wrapped under it reload after a
// reboot; the caller flushes it.
func srk(t transport.TPM) (tpm2.NamedHandle, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("tpm: create SRK: %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// akFile is the AK blob's file name in the data directory.
func akFile(dataDir string, alg KeyAlg) string {
	return filepath.Join(dataDir, "tpm_ak_"+string(alg)+".blob")
}

// LoadOrCreateAK loads the AK persisted in dataDir, or creates one and
// persists its blob there (mode 0600). A blob the TPM no longer accepts
// (TPM cleared, different TPM) is replaced by a new AK.
func (d *Device) LoadOrCreateAK(dataDir string, alg KeyAlg) (*AK, error) {
	if alg == "" {
		alg = ECC
	}
	tmpl, err := AKTemplate(alg)
	if err != nil {
		return nil, err
	}
	path := akFile(dataDir, alg)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		ak, perr := parseAKBlob(alg, b)
		if perr == nil {
			if lerr := d.do(func(t transport.TPM) error {
				_, release, err := d.loadAK(t, ak)
				if err == nil {
					release()
				}
				return err
			}); lerr == nil {
				return ak, nil
			}
		}
		// Unusable blob: fall through and create a new AK.
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("tpm: read AK blob: %w", err)
	}
	var ak *AK
	err = d.do(func(t transport.TPM) error {
		parent, err := srk(t)
		if err != nil {
			return err
		}
		defer flush(t, parent.Handle)
		rsp, err := tpm2.Create{ParentHandle: parent, InPublic: tpm2.New2B(tmpl)}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: create AK: %w", err)
		}
		ak, err = newAK(alg, rsp.OutPublic, rsp.OutPrivate)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, ak.blob()); err != nil {
		return nil, err
	}
	return ak, nil
}

func newAK(alg KeyAlg, pub tpm2.TPM2BPublic, priv tpm2.TPM2BPrivate) (*AK, error) {
	p, err := pub.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: AK public: %w", err)
	}
	name, err := tpm2.ObjectName(p)
	if err != nil {
		return nil, fmt.Errorf("tpm: AK name: %w", err)
	}
	return &AK{Alg: alg, Public: tpm2.Marshal(*p), Name: name.Buffer, public: pub, private: priv}, nil
}

// blob is TPM2B_PUBLIC || TPM2B_PRIVATE.
func (ak *AK) blob() []byte {
	return append(tpm2.Marshal(ak.public), tpm2.Marshal(ak.private)...)
}

func parseAKBlob(alg KeyAlg, b []byte) (*AK, error) {
	pub, err := tpm2.Unmarshal[tpm2.TPM2BPublic](b)
	if err != nil {
		return nil, fmt.Errorf("tpm: AK blob: %w", err)
	}
	n := len(tpm2.Marshal(*pub))
	if n > len(b) {
		return nil, errors.New("tpm: AK blob truncated")
	}
	priv, err := tpm2.Unmarshal[tpm2.TPM2BPrivate](b[n:])
	if err != nil {
		return nil, fmt.Errorf("tpm: AK blob: %w", err)
	}
	if !bytes.Equal(append(tpm2.Marshal(*pub), tpm2.Marshal(*priv)...), b) {
		return nil, errors.New("tpm: AK blob has trailing bytes")
	}
	return newAK(alg, *pub, *priv)
}

// loadAK loads the AK under a fresh SRK; release flushes both.
func (d *Device) loadAK(t transport.TPM, ak *AK) (tpm2.NamedHandle, func(), error) {
	parent, err := srk(t)
	if err != nil {
		return tpm2.NamedHandle{}, nil, err
	}
	rsp, err := tpm2.Load{ParentHandle: parent, InPublic: ak.public, InPrivate: ak.private}.Execute(t)
	flush(t, parent.Handle)
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("tpm: load AK: %w", err)
	}
	h := tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	return h, func() { flush(t, h.Handle) }, nil
}

func writeFileAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tpm-ak-*")
	if err != nil {
		return fmt.Errorf("tpm: write AK blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("tpm: write AK blob: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("tpm: write AK blob: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tpm: write AK blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tpm: write AK blob: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tpm: write AK blob: %w", err)
	}
	return nil
}
