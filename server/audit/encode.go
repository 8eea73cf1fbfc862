package audit

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxStringLen bounds one string value in a record; longer values (an
// attacker-chosen rejection reason, say) are cut and marked "…[truncated]".
const MaxStringLen = 4096

// maxDepth bounds nested maps and slices.
const maxDepth = 8

// Reserved keys written by the log itself. A field with one of these names
// is written as "field_" + name.
var reserved = map[string]bool{"time": true, "request_id": true, "kind": true}

// encode returns one record as a JSON line: time, request_id, kind, then
// the fields in sorted key order.
func (l *Log) encode(ctx context.Context, kind string, fields map[string]any) (line []byte) {
	now := l.clock().UTC().Format(time.RFC3339Nano)
	id := RequestID(ctx)
	if id == "" {
		id = NewRequestID()
	}
	b := make([]byte, 0, 256+64*len(fields))
	b = append(b, `{"time":`...)
	b = appendString(b, now)
	b = append(b, `,"request_id":`...)
	b = appendString(b, id)
	b = append(b, `,"kind":`...)
	b = appendString(b, kind)
	head := len(b)
	defer func() {
		// A value's String or MarshalJSON method panicked: keep the
		// record, say what happened.
		if r := recover(); r != nil {
			line = append(b[:head], `,"audit_error":`...)
			line = appendString(line, fmt.Sprintf("encoding fields panicked: %v", r))
			line = append(line, '}', '\n')
		}
	}()
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y string) int { return strings.Compare(fieldName(x), fieldName(y)) })
	for _, k := range keys {
		name := fieldName(k)
		b = append(b, ',')
		b = appendString(b, name)
		b = append(b, ':')
		b = appendValue(b, fields[k], 0)
	}
	return append(b, '}', '\n')
}

// fieldName is the key a field is written under.
func fieldName(k string) string {
	if reserved[k] {
		return "field_" + k
	}
	return k
}

// appendValue appends v as JSON. See docs/audit.md for the mapping.
func appendValue(b []byte, v any, depth int) []byte {
	if depth > maxDepth {
		return appendString(b, "…[too deep]")
	}
	switch v := v.(type) {
	case nil:
		return append(b, "null"...)
	case string:
		return appendString(b, v)
	case bool:
		return strconv.AppendBool(b, v)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case int32:
		return strconv.AppendInt(b, int64(v), 10)
	case int64:
		return strconv.AppendInt(b, v, 10)
	case uint:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint32:
		return strconv.AppendUint(b, uint64(v), 10)
	case uint64:
		return strconv.AppendUint(b, v, 10)
	case float64:
		return appendFloat(b, v)
	case float32:
		return appendFloat(b, float64(v))
	case time.Time:
		return appendString(b, v.UTC().Format(time.RFC3339Nano))
	case time.Duration:
		return appendFloat(b, v.Seconds())
	case []byte:
		return appendString(b, hex.EncodeToString(v))
	case []string:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, e, depth+1)
		}
		return append(b, ']')
	case map[string]string:
		return appendMap(b, v, depth)
	case map[string]any:
		return appendMap(b, v, depth)
	case json.Marshaler:
		return appendJSON(b, v)
	case error:
		return appendString(b, v.Error())
	case fmt.Stringer:
		return appendString(b, v.String())
	default:
		return appendJSON(b, v)
	}
}

func appendMap[V any](b []byte, m map[string]V, depth int) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		b = appendValue(b, any(m[k]), depth+1)
	}
	return append(b, '}')
}

// appendJSON falls back to encoding/json; values it cannot encode become a
// string naming their type.
func appendJSON(b []byte, v any) []byte {
	j, err := json.Marshal(v)
	if err != nil {
		return appendString(b, fmt.Sprintf("!unencodable %T", v))
	}
	if len(j) > 4*MaxStringLen {
		return appendString(b, string(j))
	}
	return append(b, j...)
}

// appendFloat writes finite numbers as JSON numbers and NaN/±Inf as
// strings, which JSON cannot carry as numbers.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return appendString(b, strconv.FormatFloat(f, 'g', -1, 64))
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, cut at MaxStringLen bytes.
// Control characters, U+2028/U+2029 and invalid UTF-8 are escaped or
// replaced, so the result is always one valid line.
func appendString(b []byte, s string) []byte {
	truncated := false
	if len(s) > MaxStringLen {
		cut := MaxStringLen
		for cut > MaxStringLen-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
			cut-- // do not split a character
		}
		s, truncated = s[:cut], true
	}
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	if truncated {
		b = append(b, "…[truncated]"...)
	}
	return append(b, '"')
}
