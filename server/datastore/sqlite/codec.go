package sqlite

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/hallmarkid/hallmark/registration"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// maxEntryIDLen bounds caller-chosen entry IDs.
const maxEntryIDLen = 255

// jsonSelector is the stored form of one selector.
type jsonSelector struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// encodeSelectors returns a JSON array of {"type","value"} objects in the
// given order. Strings that are not valid UTF-8 are refused: JSON would
// replace their bad bytes.
func encodeSelectors(ss []registration.Selector) (string, error) {
	js := make([]jsonSelector, len(ss))
	for i, s := range ss {
		if !utf8.ValidString(s.Type) || !utf8.ValidString(s.Value) {
			return "", errors.New("selector is not valid UTF-8")
		}
		js[i] = jsonSelector{Type: s.Type, Value: s.Value}
	}
	b, err := json.Marshal(js)
	return string(b), err
}

func decodeSelectors(s string) ([]registration.Selector, error) {
	var js []jsonSelector
	if err := json.Unmarshal([]byte(s), &js); err != nil {
		return nil, fmt.Errorf("decode selectors: %w", err)
	}
	if len(js) == 0 {
		return nil, nil
	}
	ss := make([]registration.Selector, len(js))
	for i, j := range js {
		ss[i] = registration.Selector{Type: j.Type, Value: j.Value}
	}
	return ss, nil
}

// encodeStrings returns a JSON array of strings, refusing invalid UTF-8.
func encodeStrings(ss []string) (string, error) {
	if ss == nil {
		ss = []string{}
	}
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return "", errors.New("string is not valid UTF-8")
		}
	}
	b, err := json.Marshal(ss)
	return string(b), err
}

func decodeStrings(s string) ([]string, error) {
	var ss []string
	if err := json.Unmarshal([]byte(s), &ss); err != nil {
		return nil, fmt.Errorf("decode string list: %w", err)
	}
	if len(ss) == 0 {
		return nil, nil
	}
	return ss, nil
}

func encodeTrustDomains(tds []spiffeid.TrustDomain) (string, error) {
	ss := make([]string, len(tds))
	for i, td := range tds {
		if td.IsZero() {
			return "", errors.New("federated trust domain is empty")
		}
		ss[i] = td.Name()
	}
	return encodeStrings(ss)
}

func decodeTrustDomains(s string) ([]spiffeid.TrustDomain, error) {
	ss, err := decodeStrings(s)
	if err != nil || len(ss) == 0 {
		return nil, err
	}
	tds := make([]spiffeid.TrustDomain, len(ss))
	for i, name := range ss {
		if tds[i], err = spiffeid.TrustDomainFromString(name); err != nil {
			return nil, fmt.Errorf("decode trust domain %q: %w", name, err)
		}
	}
	return tds, nil
}

// selectorsKeyHash is the unique-index form of a selector set.
func selectorsKeyHash(ss []registration.Selector) []byte {
	h := sha256.Sum256([]byte(registration.SelectorsKey(ss)))
	return h[:]
}

// tokenHash is the stored form of a join token.
func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// encodeTime returns t as Unix nanoseconds, refusing times that do not
// fit (before 1678 or after 2262).
func encodeTime(t time.Time) (int64, error) {
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		return 0, fmt.Errorf("time %s out of range", t.Format(time.RFC3339))
	}
	return n, nil
}

func decodeTime(n int64) time.Time { return time.Unix(0, n).UTC() }

// encodeOptionalTime stores the zero time as NULL.
func encodeOptionalTime(t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	return encodeTime(t)
}

// idGen makes version 7 UUIDs for one batch: a millisecond timestamp, then
// 74 bits that start random and count up within the batch. Time-ordered,
// increasing IDs append to the primary-key index instead of splitting
// pages all over it, which keeps bulk inserts fast. Entry IDs name
// entries; they are not secrets.
type idGen struct {
	hi uint64 // timestamp (48 bits), version (4), rand_a (12)
	lo uint64 // variant (2), rand_b (62): the counter
}

func newIDGen(now time.Time) *idGen {
	var r [10]byte
	_, _ = rand.Read(r[:]) // never fails (crypto/rand panics instead)
	g := &idGen{
		hi: uint64(now.UnixMilli())<<16 | 0x7000 | uint64(r[0]&0x0f)<<8 | uint64(r[1]),
		lo: binary.BigEndian.Uint64(r[2:]) >> 3, // leave headroom so the counter does not wrap
	}
	return g
}

// next returns the next ID.
func (g *idGen) next() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.hi)
	binary.BigEndian.PutUint64(b[8:], g.lo&(1<<62-1)|1<<63)
	g.lo++
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}

// checkEntryID checks a caller-chosen entry ID.
func checkEntryID(id string) error {
	if len(id) > maxEntryIDLen {
		return fmt.Errorf("entry ID longer than %d bytes", maxEntryIDLen)
	}
	for _, r := range id {
		if r < 0x21 || r == 0x7f || r == utf8.RuneError {
			return fmt.Errorf("entry ID %q contains a space, control character or invalid UTF-8", id)
		}
	}
	return nil
}

func durationNanos(n int64) time.Duration { return time.Duration(n) }
