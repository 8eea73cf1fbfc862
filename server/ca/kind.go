package ca

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/internal/rotation"
	"github.com/hallmarkid/hallmark/server/authority"
)

// StateFileName is the file in Config.Dir that holds every authority (keys
// included) once the CA has rotated or shares its state; mode 0600. Until
// then a CA made by an earlier version is just KeyFileName + CertFileName,
// which New still reads.
const StateFileName = "ca-state.json"

// SharedStateKey is the KVStore key of the shared authority state.
const SharedStateKey = "ca/x509_authorities"

// KVStore is where servers sharing one database keep the authority state;
// server/datastore's KV satisfies it. The CA writes the shared state only
// through SwapKV (compare-and-swap), so that no server overwrites what
// another wrote since it last read (see authority.KVStore).
type KVStore = authority.KVStore

// files handles the CA's directory.
var files = authority.Files{Prefix: "ca"}

// spec is what the rotation engine needs to know about CA authorities:
// their words, their state document (LayoutAuthorities, which persists the
// bundle sequence) and its bounds.
var spec = &authority.Spec{
	Prefix: "ca", Noun: "authority", Plural: "authorities", IDPhrase: "an authority ID", IDAttr: "id",
	ErrUnknown: ErrUnknownAuthority, ValidID: validAuthorityID,
	Layout: authority.LayoutAuthorities, StateFileName: StateFileName, SharedKey: SharedStateKey,
	Superseded:   []string{KeyFileName, CertFileName},
	MaxStateSize: 1 << 20, // a handful of keys and certificates take a few KiB; RSA-4096 upstream chains a few more
	MaxEntries:   16,
	MaxRevoked:   64,
	Messages: authority.Messages{
		RunFailed:           "CA rotation step failed; will retry",
		SwapLost:            "another server changed the shared CA state first; adopting it and redoing the step",
		LateActivation:      "active CA authority expired before its successor was published long enough; activating the successor now (peers that lack it in their bundle will fail until they receive it)",
		Pruned:              "pruned expired CA authorities",
		Prepared:            "prepared next CA authority; published in the bundle",
		Activated:           "activated CA authority",
		Blocked:             "upstream CA certificate expires no later than the active intermediate; replace the upstream CA to keep rotating",
		SharedMissing:       "shared CA state is missing; writing this server's",
		SharedUnreadable:    "shared CA state unreadable; starting from the local copy",
		Adopted:             "adopted the shared CA state",
		KeptSigned:          "keeping a CA authority that signed SVIDs but is missing from the shared state",
		Replaced:            "CA authority replaced at once after a configuration change",
		PreparedReplaced:    "prepared CA authority replaced by an operator; it never signed",
		PreparedByOperator:  "prepared next CA authority at an operator's request; published in the bundle",
		ActivatedByOperator: "activated CA authority at an operator's request",
		Tainted:             "CA authority tainted by an operator; agents must re-mint what it signed",
		Revoked:             "CA authority revoked by an operator; removed from the bundle",
		RevokeUntainted:     "it is not tainted; taint it first and revoke it once agents have re-minted their SVIDs",
	},
}

// schedule returns when to prepare the successor of an authority valid
// from notBefore to notAfter, and when a successor this server published at
// published may become active (internal/rotation: 1/2 and 5/6).
func schedule(notBefore, notAfter, published time.Time) (prepare, activate time.Time) {
	return rotation.Schedule(notBefore, notAfter, published)
}

// entryDoc is an authority in the state document.
type entryDoc struct {
	authority.EntryHead
	Key  string `json:"key"`  // PKCS#8 PEM
	Cert string `json:"cert"` // PEM
	authority.EntryTail
}

// kind makes, lays out and publishes CA authorities for the engine, under
// the configured key type, TTL and upstream CA.
type kind struct {
	td      spiffeid.TrustDomain
	keyType string
	ttl     time.Duration
	dir     string
	up      *upstream // nil: self-signed roots
	log     *slog.Logger
}

func (k *kind) Mint(now time.Time) (*issuer, error) {
	return mint(k.td, k.keyType, k.ttl, k.up, now)
}

func (k *kind) EncodeEntry(a *issuer, head authority.EntryHead, tail authority.EntryTail) (entryDoc, error) {
	der, err := x509.MarshalPKCS8PrivateKey(a.signer)
	if err != nil {
		return entryDoc{}, fmt.Errorf("marshal key: %w", err)
	}
	return entryDoc{
		EntryHead: head,
		Key:       string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		Cert:      string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: a.cert.Raw})),
		EntryTail: tail,
	}, nil
}

// DecodeEntry parses an untrusted authority: its key and certificate must
// parse and match, and the certificate be a CA of the trust domain. One
// issued by neither itself nor the configured upstream is foreign.
func (k *kind) DecodeEntry(i int, d entryDoc) (*issuer, bool, error) {
	signer, err := parsePKCS8PEM([]byte(d.Key))
	if err != nil {
		return nil, false, fmt.Errorf("authority %d: key: %w", i, err)
	}
	certDER, err := decodeSinglePEM([]byte(d.Cert), "CERTIFICATE")
	if err != nil {
		return nil, false, fmt.Errorf("authority %d: certificate: %w", i, err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		return nil, false, fmt.Errorf("authority %d: certificate: %w", i, err)
	}
	a, err := checkAuthority(signer, cert, k.td, k.up)
	switch {
	case errors.Is(err, errForeign):
		return &issuer{id: authorityID(cert), signer: signer, cert: cert}, true, nil
	case err != nil:
		return nil, false, fmt.Errorf("authority %d: %w", i, err)
	}
	return a, false, nil
}

// Publish returns the bundle and its digest (see bundleOf).
func (k *kind) Publish(active, next *entry, old []*entry, now time.Time) ([]*x509.Certificate, string) {
	return bundleOf(active, next, old, k.up, now)
}

func (k *kind) Describe(e *entry) []any {
	return []any{"not_after", e.Key.cert.NotAfter, "intermediate", !e.Key.root}
}

// Place drops authorities foreign to the configuration; under an upstream
// CA the CA's own root stops signing (it stays in the bundle as old until
// it expires if it ever signed).
func (k *kind) Place(e *entry, status string, foreign bool, _ time.Time) (*entry, authority.Role) {
	a := e.Key
	switch {
	case foreign:
		persisted := status
		if status == StatusPrepared {
			persisted = "next"
		}
		k.log.Warn("dropping a CA authority issued by neither itself nor the configured upstream CA (configuration changed?)",
			"id", a.id, "status", persisted, "subject", a.cert.Subject.String())
		return e, authority.RoleDrop
	case status == StatusOld:
		return e, authority.RoleOld
	case k.up != nil && a.root:
		k.log.Warn("an upstream CA is configured; the CA's own root stops signing and stays in the bundle until it expires",
			"id", a.id, "not_after", a.cert.NotAfter)
		if status == StatusActive || !e.ActivatedAt.IsZero() {
			return e, authority.RoleOld
		}
		return e, authority.RoleDrop
	case status == StatusActive:
		return e, authority.RoleActive
	}
	return e, authority.RoleNext
}

// Keep keeps intermediates only while there is an upstream CA.
func (k *kind) Keep(a *issuer) bool { return k.up != nil || a.root }

// Blocked reports that a successor of active could not outlive it: with an
// upstream CA that expires no later than active, it cannot.
func (k *kind) Blocked(active *entry) (string, []any) {
	if k.up == nil || k.up.cert.NotAfter.After(active.Key.cert.NotAfter) {
		return "", nil
	}
	return fmt.Sprintf("the upstream CA certificate expires at %s, no later than the active intermediate; replace the upstream CA first",
			k.up.cert.NotAfter.UTC().Format(time.RFC3339)),
		[]any{"upstream_not_after", k.up.cert.NotAfter, "active_not_after", active.Key.cert.NotAfter}
}

// RevokeBlocked refuses revocation under an upstream CA: the bundle is the
// upstream's roots, which keep anchoring the intermediate.
func (k *kind) RevokeBlocked(*entry) string {
	if k.up != nil {
		return "it is an intermediate of the upstream CA, whose roots form the bundle and keep trusting it; revoke it at the upstream CA"
	}
	return ""
}

// LoadSingle reads the single-root layout of earlier versions (KeyFileName
// and CertFileName).
func (k *kind) LoadSingle(time.Time) (*entry, error) {
	st, err := load(k.dir, k.td)
	switch {
	case errors.Is(err, errNoCA):
		return nil, nil
	case err != nil:
		return nil, err
	}
	a := &issuer{id: authorityID(st.cert), signer: st.signer, cert: st.cert, root: true}
	return &entry{Key: a, PublishedAt: st.cert.NotBefore, ActivatedAt: st.cert.NotBefore}, nil
}

// SaveSingle writes a first self-signed root in the single-root layout;
// an intermediate goes to the state file.
func (k *kind) SaveSingle(a *issuer) (bool, error) {
	if k.up != nil {
		return false, nil
	}
	return true, save(k.dir, a.signer, a.cert)
}

func parsePKCS8PEM(data []byte) (crypto.Signer, error) {
	der, err := decodeSinglePEM(data, "PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("key of type %T cannot sign", k)
	}
	return signer, nil
}

// decodeState parses an untrusted state document for td under up.
func decodeState(data []byte, td spiffeid.TrustDomain, up *upstream) (int, error) {
	return authority.DecodeState(spec, &kind{td: td, up: up}, td, data)
}
