package awsiid

import (
	"errors"
	"fmt"
)

// AWS serves the PKCS#7 signature in BER with indefinite lengths and a
// constructed OCTET STRING for the content; Go's encoding/asn1 reads DER
// only. berToDER rewrites definite lengths and flattens constructed OCTET
// STRINGs, within bounds. Primitive contents are copied unchanged, so the
// DER signed attributes keep their bytes.

const (
	maxBERDepth = 24
	maxBERSize  = 64 << 10
)

var errBER = errors.New("awsiid: malformed BER")

// berToDER converts one complete BER element; trailing bytes are an error.
func berToDER(b []byte) ([]byte, error) {
	if len(b) > maxBERSize {
		return nil, fmt.Errorf("awsiid: PKCS#7 is %d bytes, more than %d", len(b), maxBERSize)
	}
	out, rest, err := berElement(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("awsiid: PKCS#7 has %d trailing bytes", len(rest))
	}
	return out, nil
}

// berElement converts the element at the start of b and returns the rest.
func berElement(b []byte, depth int) (der, rest []byte, err error) {
	if depth > maxBERDepth {
		return nil, nil, fmt.Errorf("%w: nested deeper than %d", errBER, maxBERDepth)
	}
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated", errBER)
	}
	tagLen := 1
	if b[0]&0x1f == 0x1f { // high tag number form
		for {
			if tagLen >= len(b) || tagLen > 4 {
				return nil, nil, fmt.Errorf("%w: bad tag", errBER)
			}
			c := b[tagLen]
			tagLen++
			if c&0x80 == 0 {
				break
			}
		}
	}
	tag := b[:tagLen]
	constructed := b[0]&0x20 != 0
	b = b[tagLen:]
	if len(b) == 0 {
		return nil, nil, fmt.Errorf("%w: truncated", errBER)
	}
	l := int(b[0])
	b = b[1:]
	if l == 0x80 { // indefinite
		if !constructed {
			return nil, nil, fmt.Errorf("%w: indefinite length on a primitive", errBER)
		}
		var body []byte
		for {
			if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
				b = b[2:]
				break
			}
			if len(b) == 0 {
				return nil, nil, fmt.Errorf("%w: missing end-of-contents", errBER)
			}
			var child []byte
			child, b, err = berElement(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			body = append(body, child...)
		}
		out, err := finish(tag, body)
		return out, b, err
	}
	if l > 0x80 {
		n := l & 0x7f
		if n > 3 || n > len(b) {
			return nil, nil, fmt.Errorf("%w: length too large", errBER)
		}
		l = 0
		for _, c := range b[:n] {
			l = l<<8 | int(c)
		}
		b = b[n:]
	}
	if l > len(b) {
		return nil, nil, fmt.Errorf("%w: length %d past the end", errBER, l)
	}
	content, rest := b[:l], b[l:]
	if !constructed {
		return encodeTLV(tag, content), rest, nil
	}
	var body []byte
	for len(content) > 0 {
		var child []byte
		child, content, err = berElement(content, depth+1)
		if err != nil {
			return nil, nil, err
		}
		body = append(body, child...)
	}
	out, err := finish(tag, body)
	return out, rest, err
}

// finish encodes a constructed element; a constructed universal OCTET
// STRING becomes a primitive one holding its segments' concatenation.
func finish(tag, body []byte) ([]byte, error) {
	if len(tag) == 1 && tag[0] == 0x24 {
		var octets []byte
		for len(body) > 0 {
			if body[0] != 0x04 {
				return nil, fmt.Errorf("%w: constructed OCTET STRING holds a non-OCTET STRING", errBER)
			}
			var inner []byte
			var err error
			inner, body, err = derContent(body)
			if err != nil {
				return nil, err
			}
			octets = append(octets, inner...)
		}
		return encodeTLV([]byte{0x04}, octets), nil
	}
	return encodeTLV(tag, body), nil
}

// derContent splits one DER element (definite length) into its content and the rest.
func derContent(b []byte) (content, rest []byte, err error) {
	if len(b) < 2 {
		return nil, nil, errBER
	}
	l := int(b[1])
	b = b[2:]
	if l > 0x80 {
		n := l & 0x7f
		if n > 3 || n > len(b) {
			return nil, nil, errBER
		}
		l = 0
		for _, c := range b[:n] {
			l = l<<8 | int(c)
		}
		b = b[n:]
	} else if l == 0x80 {
		return nil, nil, errBER
	}
	if l > len(b) {
		return nil, nil, errBER
	}
	return b[:l], b[l:], nil
}

func encodeTLV(tag, content []byte) []byte {
	out := append([]byte(nil), tag...)
	switch l := len(content); {
	case l < 0x80:
		out = append(out, byte(l))
	case l < 0x100:
		out = append(out, 0x81, byte(l))
	case l < 0x10000:
		out = append(out, 0x82, byte(l>>8), byte(l))
	default:
		out = append(out, 0x83, byte(l>>16), byte(l>>8), byte(l))
	}
	return append(out, content...)
}
