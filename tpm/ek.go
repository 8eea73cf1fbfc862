package tpm

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// Well-known EK locations (TCG EK Credential Profile; swtpm's high range).
const (
	ekRSAHandle     = tpm2.TPMHandle(0x81010001)
	ekECCHandle     = tpm2.TPMHandle(0x81010002)
	ekECC384Handle  = tpm2.TPMHandle(0x81010016)
	ekRSACertIndex  = tpm2.TPMHandle(0x01c00002)
	ekECCCertIndex  = tpm2.TPMHandle(0x01c0000a)
	ekECC384CertIdx = tpm2.TPMHandle(0x01c00016)
)

// EK is the endorsement key as read from the TPM.
type EK struct {
	// Public is the EK's TPMT_PUBLIC, marshalled.
	Public []byte
	// Key is the EK public key.
	Key crypto.PublicKey
	// Cert is the EK certificate (DER) from NV, nil when there is none.
	Cert []byte
}

// ekLoc is where an EK lives: a persistent handle (or none: create it from
// the template) and the NV index of its certificate.
type ekLoc struct {
	handle    tpm2.TPMHandle
	certIndex tpm2.TPMHandle
}

func (d *Device) ekLocations() []ekLoc {
	if d.ekAlg == ECC {
		return []ekLoc{{ekECCHandle, ekECCCertIndex}, {ekECC384Handle, ekECC384CertIdx}}
	}
	return []ekLoc{{ekRSAHandle, ekRSACertIndex}}
}

// loadedEK is an EK usable for commands; flush releases a transient one.
type loadedEK struct {
	handle tpm2.TPMHandle
	name   tpm2.TPM2BName
	public tpm2.TPMTPublic
	loc    ekLoc
	flush  func()
}

// loadEK finds the persistent EK or creates it from the TCG template.
func (d *Device) loadEK(t transport.TPM) (*loadedEK, error) {
	locs := d.ekLocations()
	for _, loc := range locs {
		rsp, err := tpm2.ReadPublic{ObjectHandle: loc.handle}.Execute(t)
		if err != nil {
			continue
		}
		pub, err := rsp.OutPublic.Contents()
		if err != nil {
			return nil, fmt.Errorf("tpm: EK at %#x: %w", uint32(loc.handle), err)
		}
		if (d.ekAlg == RSA) != (pub.Type == tpm2.TPMAlgRSA) {
			continue
		}
		return &loadedEK{handle: loc.handle, name: rsp.Name, public: *pub, loc: loc, flush: func() {}}, nil
	}
	tmpl := tpm2.RSAEKTemplate
	if d.ekAlg == ECC {
		tmpl = tpm2.ECCEKTemplate
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("tpm: create EK: %w", err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		flush(t, rsp.ObjectHandle)
		return nil, fmt.Errorf("tpm: create EK: %w", err)
	}
	h := rsp.ObjectHandle
	return &loadedEK{handle: h, name: rsp.Name, public: *pub, loc: locs[0], flush: func() { flush(t, h) }}, nil
}

func flush(t transport.TPM, h tpm2.TPMHandle) {
	_, _ = tpm2.FlushContext{FlushHandle: h}.Execute(t)
}

// EK returns the endorsement key and its certificate, if NV holds one.
func (d *Device) EK() (EK, error) {
	var ek EK
	err := d.do(func(t transport.TPM) error {
		l, err := d.loadEK(t)
		if err != nil {
			return err
		}
		defer l.flush()
		ek.Public = tpm2.Marshal(l.public)
		ek.Key, err = tpm2.Pub(l.public)
		if err != nil {
			return fmt.Errorf("tpm: EK public key: %w", err)
		}
		ek.Cert, err = readCert(t, l.loc.certIndex)
		return err
	})
	return ek, err
}

// EKHash returns the hex SHA-256 of the EK public key (PKIX DER): the value
// used in agent IDs and EK allow-lists.
func (d *Device) EKHash() (string, error) {
	ek, err := d.EK()
	if err != nil {
		return "", err
	}
	return PublicKeyHash(ek.Key)
}

// PublicKeyHash returns the hex SHA-256 of a public key's PKIX DER encoding.
func PublicKeyHash(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("tpm: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:]), nil
}

// readCert reads an EK certificate from NV; a missing index yields nil.
func readCert(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	b, err := readNV(t, index)
	if errors.Is(err, errNoIndex) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	// NV areas can be larger than the certificate: keep the DER only.
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(b, &raw)
	if err != nil {
		return nil, fmt.Errorf("tpm: EK certificate at NV %#x: %w", uint32(index), err)
	}
	return b[:len(b)-len(rest)], nil
}

var errNoIndex = errors.New("tpm: no such NV index")

// readNV reads a whole NV index in chunks.
func readNV(t transport.TPM, index tpm2.TPMHandle) ([]byte, error) {
	pubRsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if err != nil {
		return nil, errNoIndex
	}
	nvPub, err := pubRsp.NVPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("tpm: NV %#x public: %w", uint32(index), err)
	}
	size := int(nvPub.DataSize)
	chunk := 512
	if rsp, err := (tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTNVBufferMax), PropertyCount: 1}).Execute(t); err == nil {
		if props, err := rsp.CapabilityData.Data.TPMProperties(); err == nil && len(props.TPMProperty) == 1 && props.TPMProperty[0].Property == tpm2.TPMPTNVBufferMax {
			if v := int(props.TPMProperty[0].Value); v >= 256 && v <= 4096 {
				chunk = v
			}
		}
	}
	out := make([]byte, 0, size)
	for off := 0; off < size; off += chunk {
		n := min(chunk, size-off)
		rsp, err := tpm2.NVRead{
			AuthHandle: tpm2.AuthHandle{Handle: index, Name: pubRsp.NVName, Auth: tpm2.PasswordAuth(nil)},
			NVIndex:    tpm2.NamedHandle{Handle: index, Name: pubRsp.NVName},
			Size:       uint16(n),
			Offset:     uint16(off),
		}.Execute(t)
		if err != nil {
			return nil, fmt.Errorf("tpm: read NV %#x: %w", uint32(index), err)
		}
		out = append(out, rsp.Data.Buffer...)
	}
	return out, nil
}

// Info describes a TPM for operators.
type Info struct {
	// Manufacturer is the four-character vendor ID, e.g. "IBM", "INTC".
	Manufacturer string
	// ManufacturerID is the vendor ID as 8 hex digits, as in EK certificates.
	ManufacturerID string
	// VendorString is the concatenated vendor strings.
	VendorString string
	// FirmwareVersion is "major.minor.build.patch"-style, from the two
	// firmware version properties.
	FirmwareVersion string
	// EKHash is the hex SHA-256 of the EK public key (PKIX DER).
	EKHash string
	// EKCertSubject and EKCertIssuer are empty without an EK certificate.
	EKCertSubject string
	EKCertIssuer  string
	// PCRBanks lists the active banks, e.g. ["sha1", "sha256"].
	PCRBanks []string
}

// Info reads vendor, firmware, EK and PCR bank information.
func (d *Device) Info() (Info, error) {
	var info Info
	err := d.do(func(t transport.TPM) error {
		props := map[tpm2.TPMPT]uint32{}
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapTPMProperties, Property: uint32(tpm2.TPMPTManufacturer), PropertyCount: 16}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: get properties: %w", err)
		}
		tp, err := rsp.CapabilityData.Data.TPMProperties()
		if err != nil {
			return fmt.Errorf("tpm: get properties: %w", err)
		}
		for _, p := range tp.TPMProperty {
			props[p.Property] = p.Value
		}
		info.Manufacturer = fourCC(props[tpm2.TPMPTManufacturer])
		info.ManufacturerID = fmt.Sprintf("%08X", props[tpm2.TPMPTManufacturer])
		info.VendorString = fourCC(props[tpm2.TPMPTVendorString1]) + fourCC(props[tpm2.TPMPTVendorString2]) +
			fourCC(props[tpm2.TPMPTVendorString3]) + fourCC(props[tpm2.TPMPTVendorString4])
		f1, f2 := props[tpm2.TPMPTFirmwareVersion1], props[tpm2.TPMPTFirmwareVersion2]
		info.FirmwareVersion = fmt.Sprintf("%d.%d.%d.%d", f1>>16, f1&0xffff, f2>>16, f2&0xffff)

		prsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapPCRs, PropertyCount: 1}.Execute(t)
		if err != nil {
			return fmt.Errorf("tpm: get PCR banks: %w", err)
		}
		sels, err := prsp.CapabilityData.Data.AssignedPCR()
		if err != nil {
			return fmt.Errorf("tpm: get PCR banks: %w", err)
		}
		for _, s := range sels.PCRSelections {
			active := false
			for _, b := range s.PCRSelect {
				active = active || b != 0
			}
			if name, ok := bankNames[s.Hash]; ok && active {
				info.PCRBanks = append(info.PCRBanks, name)
			}
		}
		return nil
	})
	if err != nil {
		return Info{}, err
	}
	ek, err := d.EK()
	if err != nil {
		return Info{}, err
	}
	if info.EKHash, err = PublicKeyHash(ek.Key); err != nil {
		return Info{}, err
	}
	if ek.Cert != nil {
		// Only for display: the issuer and subject are readable even when
		// the certificate carries extensions Go does not handle.
		if c, err := x509.ParseCertificate(ek.Cert); err == nil {
			info.EKCertSubject = c.Subject.String()
			info.EKCertIssuer = c.Issuer.String()
		} else {
			info.EKCertSubject = "unparseable: " + err.Error()
		}
	}
	return info, nil
}

func fourCC(v uint32) string {
	b := []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
	return strings.TrimRight(strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return -1
		}
		return r
	}, string(b)), " ")
}
