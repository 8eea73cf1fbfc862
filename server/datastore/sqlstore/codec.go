package sqlstore

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/hallmarkid/hallmark/registration"
)

// maxEntryIDLen bounds caller-chosen entry IDs.
const maxEntryIDLen = 255

// checkText refuses strings the backend cannot hold as given: invalid
// UTF-8 (JSON would replace the bad bytes, PostgreSQL refuses them) and,
// where the dialect says so, NUL bytes.
func (d *Dialect) checkText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not valid UTF-8", what)
	}
	if d.NoNUL && strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s contains a NUL byte, which %s text cannot store", what, d.Product)
	}
	return nil
}

// storable reports whether s could be a stored key; lookups of any other
// string find nothing (rather than failing in the database).
func (d *Dialect) storable(s string) bool { return d.checkText("", s) == nil }

// jsonSelector is the stored JSON form of one selector.
type jsonSelector struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// encodeJSONSelectors returns a JSON array of {"type","value"} objects in
// the given order. JSON escapes everything, NUL included, so selectors
// are kept exactly; strings that are not valid UTF-8 are refused because
// JSON would replace their bad bytes.
func encodeJSONSelectors(ss []registration.Selector) (string, error) {
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

func decodeJSONSelectors(s string) ([]registration.Selector, error) {
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

// encodeJSONStrings returns a JSON array of strings (the caller has
// checked them).
func encodeJSONStrings(ss []string) (string, error) {
	if ss == nil {
		ss = []string{}
	}
	b, err := json.Marshal(ss)
	return string(b), err
}

func decodeJSONStrings(s string) ([]string, error) {
	var ss []string
	if err := json.Unmarshal([]byte(s), &ss); err != nil {
		return nil, fmt.Errorf("decode string list: %w", err)
	}
	if len(ss) == 0 {
		return nil, nil
	}
	return ss, nil
}

// EncodeEntrySelectors returns "type:value" strings in the given order,
// the text-array form of entry selectors; the selectors have been
// validated, so no type contains ':'.
func EncodeEntrySelectors(ss []registration.Selector) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.Type + ":" + s.Value
	}
	return out
}

// DecodeEntrySelectors reverses EncodeEntrySelectors.
func DecodeEntrySelectors(ss []string) ([]registration.Selector, error) {
	if len(ss) == 0 {
		return nil, nil
	}
	out := make([]registration.Selector, len(ss))
	for i, s := range ss {
		typ, value, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("stored selector %q lacks a ':'", s)
		}
		out[i] = registration.Selector{Type: typ, Value: value}
	}
	return out, nil
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

// EncodeTime returns t as Unix nanoseconds, refusing times that do not
// fit (before 1678 or after 2262).
func EncodeTime(t time.Time) (int64, error) {
	n := t.UnixNano()
	if !time.Unix(0, n).Equal(t) {
		return 0, fmt.Errorf("time %s out of range", t.Format(time.RFC3339))
	}
	return n, nil
}

// DecodeTime reverses EncodeTime, in UTC.
func DecodeTime(n int64) time.Time { return time.Unix(0, n).UTC() }

// encodeOptionalTime stores the zero time as NULL.
func encodeOptionalTime(t time.Time) (any, error) {
	if t.IsZero() {
		return nil, nil
	}
	return EncodeTime(t)
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
	return &idGen{
		hi: uint64(now.UnixMilli())<<16 | 0x7000 | uint64(r[0]&0x0f)<<8 | uint64(r[1]),
		lo: binary.BigEndian.Uint64(r[2:]) >> 3, // leave headroom so the counter does not wrap
	}
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
