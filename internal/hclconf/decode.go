package hclconf

import (
	"fmt"
	"reflect"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/zclconf/go-cty/cty"
)

var (
	exprType    = reflect.TypeFor[hcl.Expression]()
	attrPtrType = reflect.TypeFor[*hcl.Attribute]()
	ctyValType  = reflect.TypeFor[cty.Value]()
)

// Section is a decoded block body, kept so that checks made after decoding
// can point at the attribute they are about.
type Section struct {
	attrs   hcl.Attributes
	missing hcl.Range
	diags   hcl.Diagnostics // errors found while decoding
}

// Decode strictly decodes body into v, a pointer to a struct with gohcl
// tags. On top of gohcl's checks (unknown arguments and blocks, missing
// required arguments, duplicate single blocks) it rejects values whose type
// differs from the field's, where gohcl would quietly convert: a number for
// a string field, "8081" for a number, "true" for a bool. No variables or
// functions are available to expressions.
//
// Decode returns diagnostics instead of an error so that a caller can add
// its own checks and report everything at once; see DiagError.
func Decode(body hcl.Body, v any) (Section, hcl.Diagnostics) {
	rv := reflect.ValueOf(v)
	if !rv.IsValid() || rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("hclconf: Decode target must be a non-nil pointer to a struct, not %T", v))
	}
	attrs, diags := checkTypes(body, rv.Elem().Type())
	diags = append(diags, gohcl.DecodeBody(body, nil, v)...)
	diags = dropEchoes(diags)
	s := Section{attrs: attrs, missing: body.MissingItemRange()}
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			s.diags = append(s.diags, d)
		}
	}
	return s, diags
}

// dropEchoes removes gohcl's "Unsuitable value type" errors that only echo
// a more precise error about the same expression: a type mismatch found by
// checkTypes, or "Variables not allowed" inside it.
func dropEchoes(diags hcl.Diagnostics) hcl.Diagnostics {
	const echo = "Unsuitable value type"
	out := diags[:0:0]
	for _, d := range diags {
		if d.Summary == echo && d.Subject != nil && overlapsOther(diags, d, echo) {
			continue
		}
		out = append(out, d)
	}
	return out
}

func overlapsOther(diags hcl.Diagnostics, e *hcl.Diagnostic, echo string) bool {
	for _, d := range diags {
		if d.Summary != echo && d.Severity == hcl.DiagError && d.Subject != nil &&
			(within(*d.Subject, *e.Subject) || within(*e.Subject, *d.Subject)) {
			return true
		}
	}
	return false
}

// Set reports whether the attribute name was written in the body and
// decoded without error. Checks made after decoding should look only at
// attributes that are Set, so that one mistake is reported once.
func (s Section) Set(name string) bool {
	a, ok := s.attrs[name]
	if !ok {
		return false
	}
	for _, d := range s.diags {
		if d.Subject != nil && within(*d.Subject, a.Range) {
			return false
		}
	}
	return true
}

// Range returns the position of the value of attribute name, or of the
// start of the body when it is absent.
func (s Section) Range(name string) hcl.Range {
	if a, ok := s.attrs[name]; ok {
		return a.Expr.Range()
	}
	return s.missing
}

// Errorf makes an error diagnostic about attribute name, at its value.
func (s Section) Errorf(name, summary, detailFormat string, args ...any) *hcl.Diagnostic {
	return Errorf(s.Range(name), summary, detailFormat, args...)
}

// Duration returns the duration written as the string attribute name (raw
// is its decoded value), or def when the attribute is not Set. A value that
// does not parse, or is not positive, is added to diags.
func (s Section) Duration(name, raw string, def time.Duration, diags *hcl.Diagnostics) time.Duration {
	if !s.Set(name) {
		return def
	}
	d, err := ParseDuration(raw)
	if err != nil {
		*diags = append(*diags, s.Errorf(name, "Invalid duration", "%s: %v.", name, err))
		return def
	}
	return d
}

// ParseDuration parses a positive duration string such as "90s", "10m" or
// "1h30m" with time.ParseDuration. Plain numbers are rejected: a unit is
// always required.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: write a number with a unit, such as \"90s\", \"10m\" or \"1h\"", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid duration %q: must be greater than zero", s)
	}
	return d, nil
}

func within(inner, outer hcl.Range) bool {
	return inner.Filename == outer.Filename &&
		inner.Start.Byte >= outer.Start.Byte && inner.End.Byte <= outer.End.Byte
}

// checkTypes compares the type of each attribute value in body with the Go
// type of its field in struct type t, recursing into nested blocks. It
// returns body's attributes. Other problems (unknown names, missing
// arguments, bad expressions) are left for gohcl to report once.
func checkTypes(body hcl.Body, t reflect.Type) (hcl.Attributes, hcl.Diagnostics) {
	schema, _ := gohcl.ImpliedBodySchema(reflect.New(t).Interface())
	content, _, _ := body.PartialContent(schema)
	if content == nil {
		return nil, nil
	}
	var diags hcl.Diagnostics
	for i := range t.NumField() {
		f := t.Field(i)
		tag, ok := f.Tag.Lookup("hcl")
		if !ok {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		switch kind {
		case "", "attr", "optional":
			a := content.Attributes[name]
			if a == nil {
				continue
			}
			ft := f.Type
			if ft == exprType || ft == attrPtrType {
				continue
			}
			val, d := a.Expr.Value(nil)
			if d.HasErrors() || val.IsNull() || !val.IsWhollyKnown() {
				continue
			}
			if err := matchType(ft, val.Type()); err != nil {
				diags = append(diags, Errorf(a.Expr.Range(), "Incorrect attribute value type",
					"Inappropriate value for attribute %q: %v.", name, err))
			}
		case "block":
			et := f.Type
			for et.Kind() == reflect.Pointer || et.Kind() == reflect.Slice {
				et = et.Elem()
			}
			if et.Kind() != reflect.Struct {
				continue
			}
			for _, b := range content.Blocks.OfType(name) {
				_, d := checkTypes(b.Body, et)
				diags = append(diags, d...)
			}
		}
	}
	return content.Attributes, diags
}

// matchType reports, as an error, whether a value of cty type ct may not be
// stored in Go type gt without conversion.
func matchType(gt reflect.Type, ct cty.Type) error {
	if typeOK(gt, ct) {
		return nil
	}
	return fmt.Errorf("%s required, got %s", describe(gt), ct.FriendlyName())
}

func typeOK(gt reflect.Type, ct cty.Type) bool {
	for gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	if gt == ctyValType || ct == cty.DynamicPseudoType {
		return true
	}
	switch gt.Kind() {
	case reflect.String:
		return ct == cty.String
	case reflect.Bool:
		return ct == cty.Bool
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return ct == cty.Number
	case reflect.Slice, reflect.Array:
		switch {
		case ct.IsListType() || ct.IsSetType():
			return typeOK(gt.Elem(), ct.ElementType())
		case ct.IsTupleType():
			for _, et := range ct.TupleElementTypes() {
				if !typeOK(gt.Elem(), et) {
					return false
				}
			}
			return true
		}
		return false
	case reflect.Map:
		switch {
		case ct.IsMapType():
			return typeOK(gt.Elem(), ct.ElementType())
		case ct.IsObjectType():
			for _, at := range ct.AttributeTypes() {
				if !typeOK(gt.Elem(), at) {
					return false
				}
			}
			return true
		}
		return false
	}
	return true // anything else is gohcl's to judge
}

func describe(gt reflect.Type) string {
	for gt.Kind() == reflect.Pointer {
		gt = gt.Elem()
	}
	switch gt.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "list of " + describe(gt.Elem())
	case reflect.Map:
		return "map of " + describe(gt.Elem())
	}
	return gt.String()
}
