package tpm

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MaxPCR is the highest PCR index accepted (PC Client TPMs have 24).
const MaxPCR = 23

var bankNames = map[tpm2.TPMIAlgHash]string{
	tpm2.TPMAlgSHA1:   "sha1",
	tpm2.TPMAlgSHA256: "sha256",
	tpm2.TPMAlgSHA384: "sha384",
	tpm2.TPMAlgSHA512: "sha512",
}

// Bank returns the TPM algorithm and Go hash of a PCR bank name
// ("sha1", "sha256", "sha384", "sha512").
func Bank(name string) (tpm2.TPMIAlgHash, crypto.Hash, error) {
	for alg, n := range bankNames {
		if n == name {
			h, err := alg.Hash()
			return alg, h, err
		}
	}
	return 0, 0, fmt.Errorf("tpm: unknown PCR bank %q", name)
}

// BankName returns the name of a PCR bank algorithm, or "" if unknown.
func BankName(alg tpm2.TPMIAlgHash) string { return bankNames[alg] }

// Selection builds a single-bank PCR selection for the given indices.
func Selection(bank string, pcrs []int) (tpm2.TPMLPCRSelection, error) {
	alg, _, err := Bank(bank)
	if err != nil {
		return tpm2.TPMLPCRSelection{}, err
	}
	if len(pcrs) == 0 {
		return tpm2.TPMLPCRSelection{}, errors.New("tpm: empty PCR selection")
	}
	bitmap := make([]byte, 3)
	for _, p := range pcrs {
		if p < 0 || p > MaxPCR {
			return tpm2.TPMLPCRSelection{}, fmt.Errorf("tpm: PCR %d out of range 0-%d", p, MaxPCR)
		}
		bitmap[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: alg, PCRSelect: bitmap}}}, nil
}

// SelectedPCRs returns the indices selected in a PCR bitmap, ascending.
func SelectedPCRs(bitmap []byte) []int {
	var out []int
	for i, b := range bitmap {
		for bit := 0; bit < 8; bit++ {
			if b&(1<<bit) != 0 {
				out = append(out, i*8+bit)
			}
		}
	}
	return out
}

// ReadPCRs reads the given PCRs of one bank.
func (d *Device) ReadPCRs(bank string, pcrs []int) (map[int][]byte, error) {
	var out map[int][]byte
	err := d.do(func(t transport.TPM) error {
		var err error
		out, err = readPCRs(t, bank, pcrs)
		return err
	})
	return out, err
}

func readPCRs(t transport.TPM, bank string, pcrs []int) (map[int][]byte, error) {
	out := make(map[int][]byte, len(pcrs))
	remaining := slices.Clone(pcrs)
	for len(remaining) > 0 {
		sel, err := Selection(bank, remaining)
		if err != nil {
			return nil, err
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: sel}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: read PCRs: %w", err)
		}
		var got []int
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			got = append(got, SelectedPCRs(s.PCRSelect)...)
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("tpm: read PCRs: bank %s returned %d values for %d PCRs", bank, len(rsp.PCRValues.Digests), len(got))
		}
		for i, p := range got {
			out[p] = rsp.PCRValues.Digests[i].Buffer
		}
		remaining = slices.DeleteFunc(remaining, func(p int) bool { _, ok := out[p]; return ok })
	}
	return out, nil
}

// Quote is a TPM quote with the PCR values it covers.
type Quote struct {
	// Attest is the TPMS_ATTEST structure the TPM signed.
	Attest []byte
	// Signature is the TPMT_SIGNATURE over Attest, marshalled.
	Signature []byte
	// PCRs holds the quoted PCR values by index.
	PCRs map[int][]byte
}

// Quote signs the PCRs of one bank with the AK, with extraData as the
// qualifying data. The PCR values are read alongside and retried until
// they match the quoted digest (a PCR may be extended in between).
func (d *Device) Quote(ak *AK, extraData []byte, bank string, pcrs []int) (Quote, error) {
	sel, err := Selection(bank, pcrs)
	if err != nil {
		return Quote{}, err
	}
	sorted := slices.Sorted(slices.Values(pcrs))
	sorted = slices.Compact(sorted)
	var q Quote
	err = d.do(func(t transport.TPM) error {
		h, release, err := d.loadAK(t, ak)
		if err != nil {
			return err
		}
		defer release()
		for range 3 {
			values, err := readPCRs(t, bank, sorted)
			if err != nil {
				return err
			}
			rsp, err := tpm2.Quote{
				SignHandle:     tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
				QualifyingData: tpm2.TPM2BData{Buffer: extraData},
				InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
				PCRSelect:      sel,
			}.Execute(t)
			if err != nil {
				return fmt.Errorf("tpm: quote: %w", err)
			}
			att, err := rsp.Quoted.Contents()
			if err != nil {
				return fmt.Errorf("tpm: quote: %w", err)
			}
			info, err := att.Attested.Quote()
			if err != nil {
				return fmt.Errorf("tpm: quote: %w", err)
			}
			// Our AKs sign with SHA-256, which is also the PCR digest hash.
			hsh := sha256.New()
			for _, p := range sorted {
				hsh.Write(values[p])
			}
			if bytes.Equal(hsh.Sum(nil), info.PCRDigest.Buffer) {
				q = Quote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature), PCRs: values}
				return nil
			}
		}
		return errors.New("tpm: quote: PCRs kept changing while quoting")
	})
	return q, err
}

// ActivateCredential recovers the secret the server sealed to the EK and
// the AK's name with MakeCredential. The TPM only releases it when the AK
// is loaded on the TPM holding that EK.
func (d *Device) ActivateCredential(ak *AK, credentialBlob, encryptedSecret []byte) ([]byte, error) {
	var secret []byte
	err := d.do(func(t transport.TPM) error {
		ek, err := d.loadEK(t)
		if err != nil {
			return err
		}
		defer ek.flush()
		h, release, err := d.loadAK(t, ak)
		if err != nil {
			return err
		}
		defer release()
		// Low-range EK templates need PolicySecret(endorsement); the
		// high-range ones (swtpm's P-384 EK) allow the empty password.
		var ekAuth tpm2.Session = tpm2.PasswordAuth(nil)
		if !ek.public.ObjectAttributes.UserWithAuth {
			ekAuth = tpm2.Policy(ek.public.NameAlg, 16, func(t transport.TPM, session tpm2.TPMISHPolicy, nonce tpm2.TPM2BNonce) error {
				_, err := tpm2.PolicySecret{
					AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
					PolicySession: session,
					NonceTPM:      nonce,
				}.Execute(t)
				return err
			})
		}
		rsp, err := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle:      tpm2.AuthHandle{Handle: ek.handle, Name: ek.name, Auth: ekAuth},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: activate credential: %w", err)
		}
		secret = rsp.CertInfo.Buffer
		return nil
	})
	return secret, err
}

// ExtendPCR extends a PCR in one bank with a digest. It is meant for
// debug/application PCRs (16, 23) and tests, never for firmware PCRs.
func (d *Device) ExtendPCR(index int, bank string, digest []byte) error {
	alg, _, err := Bank(bank)
	if err != nil {
		return err
	}
	if index < 0 || index > MaxPCR {
		return fmt.Errorf("tpm: PCR %d out of range", index)
	}
	return d.do(func(t transport.TPM) error {
		_, err := tpm2.PCRExtend{
			PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)},
			Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: alg, Digest: digest}}},
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: extend PCR %d: %w", index, err)
		}
		return nil
	})
}

// ResetPCR resets a resettable PCR (16 or 23 at locality 0) in all banks.
func (d *Device) ResetPCR(index int) error {
	return d.do(func(t transport.TPM) error {
		_, err := tpm2.PCRReset{PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)}}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: reset PCR %d: %w", index, err)
		}
		return nil
	})
}
