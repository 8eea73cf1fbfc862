package registration

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// MaxSelectorLen bounds the length of a selector's type plus value.
const MaxSelectorLen = 1024

// Selector is one attested property: Type "unix", Value "uid:1000".
type Selector struct {
	Type  string
	Value string
}

// String returns the selector in its "type:value" form.
func (s Selector) String() string { return s.Type + ":" + s.Value }

// ParseSelector parses "type:value". The type is the text before the first
// colon; the value is everything after it and may contain colons.
func ParseSelector(s string) (Selector, error) {
	typ, value, ok := strings.Cut(s, ":")
	sel := Selector{Type: typ, Value: value}
	if !ok {
		return Selector{}, fmt.Errorf("registration: selector %q: want type:value", s)
	}
	if err := sel.Validate(); err != nil {
		return Selector{}, err
	}
	return sel, nil
}

// Validate reports whether the selector is well formed.
func (s Selector) Validate() error {
	switch {
	case s.Type == "":
		return errors.New("registration: selector type is empty")
	case s.Value == "":
		return fmt.Errorf("registration: selector %q: value is empty", s.Type)
	case len(s.Type)+len(s.Value) > MaxSelectorLen:
		return fmt.Errorf("registration: selector longer than %d bytes", MaxSelectorLen)
	case strings.ContainsRune(s.Type, ':'):
		return fmt.Errorf("registration: selector type %q contains ':'", s.Type)
	}
	for _, r := range s.Type {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("registration: selector type %q: only a-z, 0-9, '_' and '-' allowed", s.Type)
		}
	}
	for _, r := range s.Value {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("registration: selector %q: value contains a control character", s.Type)
		}
	}
	return nil
}

// SortSelectors sorts in place by type, then value, and returns ss.
func SortSelectors(ss []Selector) []Selector {
	sort.Slice(ss, func(i, j int) bool {
		if ss[i].Type != ss[j].Type {
			return ss[i].Type < ss[j].Type
		}
		return ss[i].Value < ss[j].Value
	})
	return ss
}

// SelectorSet is a set of selectors for fast subset checks.
type SelectorSet map[Selector]struct{}

// NewSelectorSet returns a set holding ss.
func NewSelectorSet(ss ...Selector) SelectorSet {
	set := make(SelectorSet, len(ss))
	for _, s := range ss {
		set[s] = struct{}{}
	}
	return set
}

// Includes reports whether every selector in ss is in the set.
func (set SelectorSet) Includes(ss []Selector) bool {
	for _, s := range ss {
		if _, ok := set[s]; !ok {
			return false
		}
	}
	return true
}

// SelectorsKey returns a canonical string for a selector list, independent
// of order and duplicates; used for uniqueness of entries.
func SelectorsKey(ss []Selector) string {
	c := SortSelectors(append([]Selector(nil), ss...))
	var b strings.Builder
	for i, s := range c {
		if i > 0 && s == c[i-1] {
			continue
		}
		b.WriteString(s.Type)
		b.WriteByte(':')
		b.WriteString(s.Value)
		b.WriteByte('\n')
	}
	return b.String()
}
