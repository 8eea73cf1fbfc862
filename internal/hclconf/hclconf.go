package hclconf

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxFileSize bounds the size of a configuration file.
const MaxFileSize = 1 << 20

// Block is one labelled block, such as node_attestor "tpm" { ... }, whose
// body is decoded later by the component that owns its kind.
type Block struct {
	// Type is the block type, e.g. "node_attestor".
	Type string
	// Kind is the block's label, e.g. "join_token", "tpm", "unix".
	Kind string
	// Body is the undecoded body; pass the Block to DecodeBlock.
	Body hcl.Body
	// Range is the block header's position, for messages about the block.
	Range hcl.Range
}

// Pos returns the block header's position as "file:line".
func (b Block) Pos() string {
	return linePos(b.Range)
}

// DecodeBlock strictly decodes b's body into v, a pointer to a struct with
// gohcl tags (`hcl:"name,optional"`, `hcl:"name,block"`, ...). Unknown
// arguments and blocks, values of the wrong type and missing required
// arguments are errors whose text carries file:line; the error is an
// *Error prefixed with the block's type and kind (node_attestor "tpm").
// A Block with a nil Body decodes as an empty body.
func DecodeBlock(b Block, v any) error {
	body := b.Body
	if body == nil {
		body = hcl.EmptyBody()
	}
	_, diags := Decode(body, v)
	typ := b.Type
	if typ == "" {
		typ = "block"
	}
	return DiagError(fmt.Sprintf("%s %q", typ, b.Kind), diags)
}

// ParseFile parses src as HCL native syntax. filename is used in positions.
func ParseFile(filename string, src []byte) (*hcl.File, hcl.Diagnostics) {
	if len(src) > MaxFileSize {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Configuration file too large",
			Detail:   fmt.Sprintf("The file is %d bytes; at most %d are accepted.", len(src), MaxFileSize),
			Subject:  &hcl.Range{Filename: filename, Start: hcl.InitialPos, End: hcl.InitialPos},
		}}
	}
	return hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
}

// Error is a configuration error: every problem found, each with its
// position. Its text has one problem per line, each "file:line,col-col:
// Summary; Detail".
type Error struct {
	// Prefix names what was being read, e.g. "server config".
	Prefix string
	// Diags holds the error diagnostics, in source order. Callers may
	// render them with hcl.NewDiagnosticTextWriter for source snippets.
	Diags hcl.Diagnostics
}

func (e *Error) Error() string {
	if len(e.Diags) == 1 {
		return e.Prefix + ": " + FormatDiag(e.Diags[0])
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problems:", e.Prefix, len(e.Diags))
	for _, d := range e.Diags {
		b.WriteString("\n\t")
		b.WriteString(FormatDiag(d))
	}
	return b.String()
}

// FormatDiag renders one diagnostic as "file:line,col-col: Summary; Detail".
func FormatDiag(d *hcl.Diagnostic) string {
	var b strings.Builder
	if d.Subject != nil {
		b.WriteString(d.Subject.String())
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString("; ")
		b.WriteString(d.Detail)
	}
	return b.String()
}

// DiagError returns an *Error holding the error diagnostics of diags,
// sorted by position and with exact duplicates dropped, or nil when there
// are none.
func DiagError(prefix string, diags hcl.Diagnostics) error {
	var errs hcl.Diagnostics
	seen := map[string]bool{}
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		k := FormatDiag(d)
		if seen[k] {
			continue
		}
		seen[k] = true
		errs = append(errs, d)
	}
	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Subject, errs[j].Subject
		switch {
		case a == nil || b == nil:
			return a != nil && b == nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		default:
			return a.Start.Byte < b.Start.Byte
		}
	})
	return &Error{Prefix: prefix, Diags: errs}
}

// Errorf makes an error diagnostic at rng.
func Errorf(rng hcl.Range, summary, detailFormat string, args ...any) *hcl.Diagnostic {
	r := rng
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(detailFormat, args...),
		Subject:  &r,
	}
}

// ReadFile reads a configuration file of at most MaxFileSize bytes.
func ReadFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	src, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxFileSize {
		return nil, fmt.Errorf("%s: file larger than %d bytes", path, MaxFileSize)
	}
	return src, nil
}
