package hclconf

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
)

// Single returns the one block of type typ in blocks, or nil when there is
// none. More than one is reported as a duplicate; none, when required, as
// missing at the position missing.
func Single(blocks hcl.Blocks, typ string, required bool, missing hcl.Range, diags *hcl.Diagnostics) *hcl.Block {
	of := blocks.OfType(typ)
	if len(of) == 0 {
		if required {
			*diags = append(*diags, Errorf(missing, fmt.Sprintf("Missing %s block", typ),
				"A %s block is required.", typ))
		}
		return nil
	}
	for _, b := range of[1:] {
		*diags = append(*diags, Errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", typ),
			"Only one %s block is allowed. Another was defined at %s.", typ, linePos(of[0].DefRange)))
	}
	return of[0]
}

// Labelled returns the blocks of type typ, each labelled with a kind, as
// Blocks. A kind that is not a lower-case identifier ([a-z][a-z0-9_]*), or
// that is used twice, is reported.
func Labelled(blocks hcl.Blocks, typ string, diags *hcl.Diagnostics) []Block {
	var out []Block
	first := map[string]hcl.Range{}
	for _, b := range blocks.OfType(typ) {
		kind, rng := b.Labels[0], b.LabelRanges[0]
		if !validKind(kind) {
			*diags = append(*diags, Errorf(rng, fmt.Sprintf("Invalid %s kind", typ),
				"%q is not a valid kind: use lower-case letters, digits and underscores, starting with a letter.", kind))
			continue
		}
		if prev, dup := first[kind]; dup {
			*diags = append(*diags, Errorf(b.DefRange, fmt.Sprintf("Duplicate %s block", typ),
				"Only one %s %q block is allowed. Another was defined at %s.", typ, kind, linePos(prev)))
			continue
		}
		first[kind] = b.DefRange
		out = append(out, Block{Type: typ, Kind: kind, Body: b.Body, Range: b.DefRange})
	}
	return out
}

func validKind(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func linePos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", r.Filename, r.Start.Line)
}

// Optional returns an optional unlabelled block as a Block whose body its
// owner decodes later with DecodeBlock, or nil when absent; a duplicate is
// a diagnostic.
func Optional(blocks hcl.Blocks, typ string, top hcl.Range, diags *hcl.Diagnostics) *Block {
	b := Single(blocks, typ, false, top, diags)
	if b == nil {
		return nil
	}
	return &Block{Type: typ, Kind: typ, Body: b.Body, Range: b.DefRange}
}
