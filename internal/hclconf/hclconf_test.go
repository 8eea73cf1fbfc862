package hclconf_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

type inner struct {
	Name  string `hcl:"name,label"`
	Value int    `hcl:"value"`
}

type attestorConfig struct {
	Path     string            `hcl:"path"`
	Port     int               `hcl:"port,optional"`
	Enabled  bool              `hcl:"enabled,optional"`
	Ratio    float64           `hcl:"ratio,optional"`
	Roles    []string          `hcl:"roles,optional"`
	PCRs     []int             `hcl:"pcrs,optional"`
	Tags     map[string]string `hcl:"tags,optional"`
	Optional *string           `hcl:"optional,optional"`
	Rules    []inner           `hcl:"rule,block"`
	Limit    *struct {
		Max int `hcl:"max"`
	} `hcl:"limit,block"`
}

// block parses src as a file holding one node_attestor block and returns it.
func block(t *testing.T, src string) hclconf.Block {
	t.Helper()
	f, diags := hclconf.ParseFile("a.hcl", []byte(src))
	if diags.HasErrors() {
		t.Fatalf("parse: %v", diags)
	}
	content, diags := f.Body.Content(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{
		{Type: "node_attestor", LabelNames: []string{"kind"}},
	}})
	if diags.HasErrors() {
		t.Fatalf("content: %v", diags)
	}
	blocks := hclconf.Labelled(content.Blocks, "node_attestor", &diags)
	if diags.HasErrors() || len(blocks) != 1 {
		t.Fatalf("blocks: %d, %v", len(blocks), diags)
	}
	return blocks[0]
}

func TestDecodeBlock(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		wantErr []string
		want    func(t *testing.T, c attestorConfig)
	}{
		{
			name: "all types",
			body: `
  path    = "/x"
  port    = 8
  enabled = true
  ratio   = 0.5
  roles   = ["a", "b"]
  pcrs    = [0, 7]
  tags    = { env = "prod" }
  optional = "o"
  rule "r1" { value = 1 }
  rule "r2" { value = 2 }
  limit { max = 3 }`,
			want: func(t *testing.T, c attestorConfig) {
				want := attestorConfig{Path: "/x", Port: 8, Enabled: true, Ratio: 0.5, Roles: []string{"a", "b"},
					PCRs: []int{0, 7}, Tags: map[string]string{"env": "prod"}, Rules: []inner{{"r1", 1}, {"r2", 2}}}
				got := c
				if got.Optional == nil || *got.Optional != "o" || got.Limit == nil || got.Limit.Max != 3 {
					t.Errorf("optional/limit not decoded: %+v", got)
				}
				got.Optional, got.Limit = nil, nil
				if !reflect.DeepEqual(got, want) {
					t.Errorf("got %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "defaults",
			body: `path = "/x"`,
			want: func(t *testing.T, c attestorConfig) {
				if c.Port != 0 || c.Enabled || c.Roles != nil || c.Optional != nil || c.Limit != nil {
					t.Errorf("got %+v", c)
				}
			},
		},
		{name: "unknown argument", body: `path = "/x"
  bogus = 1`, wantErr: []string{`a.hcl:3,3-8: Unsupported argument; An argument named "bogus" is not expected here.`}},
		{name: "unknown argument suggestion", body: `path = "/x"
  prot = 1`, wantErr: []string{`a.hcl:3,3-7: Unsupported argument`, `Did you mean "port"?`}},
		{name: "unknown block", body: `path = "/x"
  nope {}`, wantErr: []string{`a.hcl:3,3-7: Unsupported block type`}},
		{name: "missing required", body: ``, wantErr: []string{`a.hcl:1,21-21: Missing required argument; The argument "path" is required`}},
		{name: "number for string", body: `path = 5`,
			wantErr: []string{`a.hcl:2,10-11: Incorrect attribute value type; Inappropriate value for attribute "path": string required, got number.`}},
		{name: "bool for string", body: `path = true`, wantErr: []string{`"path": string required, got bool`}},
		{name: "string for number", body: `path = "/x"
  port = "8"`, wantErr: []string{`a.hcl:3,10-13: Incorrect attribute value type`, `"port": number required, got string`}},
		{name: "string for bool", body: `path = "/x"
  enabled = "true"`, wantErr: []string{`a.hcl:3`, `"enabled": bool required, got string`}},
		{name: "fraction for int", body: `path = "/x"
  port = 1.5`, wantErr: []string{`a.hcl:3,10-13`, `whole number`}},
		{name: "list of mixed", body: `path = "/x"
  roles = ["a", 1]`, wantErr: []string{`a.hcl:3`, `"roles": list of string required, got tuple`}},
		{name: "string for list", body: `path = "/x"
  roles = "a"`, wantErr: []string{`a.hcl:3`, `"roles": list of string required, got string`}},
		{name: "map of numbers", body: `path = "/x"
  tags = { a = 1 }`, wantErr: []string{`a.hcl:3`, `"tags": map of string required, got object`}},
		{name: "pointer target", body: `path = "/x"
  optional = 1`, wantErr: []string{`a.hcl:3`, `"optional": string required, got number`}},
		{name: "nested block wrong type", body: `path = "/x"
  rule "r" { value = "1" }`, wantErr: []string{`a.hcl:3,22-25`, `"value": number required, got string`}},
		{name: "nested block unknown argument", body: `path = "/x"
  limit {
    max = 1
    min = 0
  }`, wantErr: []string{`a.hcl:5,5-8: Unsupported argument`}},
		{name: "duplicate single nested block", body: `path = "/x"
  limit { max = 1 }
  limit { max = 2 }`, wantErr: []string{`a.hcl:4,3-8: Duplicate limit block`}},
		{name: "variables not allowed", body: `path = env.HOME`, wantErr: []string{`a.hcl:2,10-13: Variables not allowed`}},
		{name: "functions not allowed", body: `path = upper("x")`, wantErr: []string{`a.hcl:2`, `Function calls not allowed`}},
		{name: "every problem at once", body: `path = 1
  port = "x"
  bogus = 2`, wantErr: []string{`3 problems`, `a.hcl:2,`, `a.hcl:3,`, `a.hcl:4,`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := block(t, "node_attestor \"tpm\" {\n  "+tt.body+"\n}\n")
			var c attestorConfig
			err := hclconf.DecodeBlock(b, &c)
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				tt.want(t, c)
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.wantErr)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if !strings.HasPrefix(err.Error(), `node_attestor "tpm": `) {
				t.Errorf("error %q lacks the block prefix", err)
			}
			var ce *hclconf.Error
			if !errors.As(err, &ce) || len(ce.Diags) == 0 {
				t.Errorf("error is not an *hclconf.Error with diagnostics: %#v", err)
			}
		})
	}
}

func TestDecodeBlockEmptyBody(t *testing.T) {
	var v struct {
		X string `hcl:"x,optional"`
	}
	if err := hclconf.DecodeBlock(hclconf.Block{Kind: "k"}, &v); err != nil {
		t.Fatal(err)
	}
	var req struct {
		X string `hcl:"x"`
	}
	if err := hclconf.DecodeBlock(hclconf.Block{Kind: "k"}, &req); err == nil ||
		!strings.Contains(err.Error(), "Missing required argument") {
		t.Fatalf("got %v, want a missing argument error", err)
	}
}

func TestBlockPos(t *testing.T) {
	b := block(t, "\n\nnode_attestor \"tpm\" {}\n")
	if got := b.Pos(); got != "a.hcl:3" {
		t.Fatalf("Pos() = %q", got)
	}
	if b.Type != "node_attestor" || b.Kind != "tpm" {
		t.Fatalf("got %+v", b)
	}
}

func TestParseFileTooLarge(t *testing.T) {
	_, diags := hclconf.ParseFile("big.hcl", bytes.Repeat([]byte("#"), hclconf.MaxFileSize+1))
	err := hclconf.DiagError("config", diags)
	if err == nil || !strings.Contains(err.Error(), "big.hcl:1,1-1: Configuration file too large") {
		t.Fatalf("got %v", err)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.hcl")
	big := filepath.Join(dir, "big.hcl")
	if err := os.WriteFile(ok, []byte("x = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(big, bytes.Repeat([]byte("#"), hclconf.MaxFileSize+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string
	}{
		{name: "ok", path: ok},
		{name: "too large", path: big, wantErr: "larger than"},
		{name: "missing", path: filepath.Join(dir, "nope.hcl"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := hclconf.ReadFile(tt.path)
			checkErr(t, err, tt.wantErr)
		})
	}
}

func TestDiagError(t *testing.T) {
	at := func(line int) hcl.Range {
		return hcl.Range{Filename: "f.hcl", Start: hcl.Pos{Line: line, Column: 1, Byte: line * 10}, End: hcl.Pos{Line: line, Column: 2, Byte: line*10 + 1}}
	}
	if err := hclconf.DiagError("p", nil); err != nil {
		t.Fatalf("no diagnostics gave %v", err)
	}
	warn := hcl.Diagnostics{{Severity: hcl.DiagWarning, Summary: "w"}}
	if err := hclconf.DiagError("p", warn); err != nil {
		t.Fatalf("warnings only gave %v", err)
	}
	diags := hcl.Diagnostics{
		hclconf.Errorf(at(5), "Second", "detail %d", 5),
		{Severity: hcl.DiagError, Summary: "No position"},
		hclconf.Errorf(at(2), "First", "detail %d", 2),
		hclconf.Errorf(at(2), "First", "detail %d", 2), // exact duplicate
	}
	want := "p: 3 problems:\n\tf.hcl:2,1-2: First; detail 2\n\tf.hcl:5,1-2: Second; detail 5\n\tNo position"
	if err := hclconf.DiagError("p", diags); err == nil || err.Error() != want {
		t.Fatalf("got %q, want %q", err, want)
	}
	one := hclconf.DiagError("p", diags[:1])
	if one == nil || one.Error() != "p: f.hcl:5,1-2: Second; detail 5" {
		t.Fatalf("got %q", one)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr string
	}{
		{name: "hours", in: "168h", want: 168 * time.Hour},
		{name: "seconds", in: "90s", want: 90 * time.Second},
		{name: "compound", in: "1h30m", want: 90 * time.Minute},
		{name: "plain seconds", in: "3600", wantErr: `invalid duration "3600": write a number with a unit`},
		{name: "empty", in: "", wantErr: "invalid duration"},
		{name: "days", in: "7d", wantErr: "invalid duration"},
		{name: "zero", in: "0s", wantErr: "must be greater than zero"},
		{name: "negative", in: "-1h", wantErr: "must be greater than zero"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hclconf.ParseDuration(tt.in)
			checkErr(t, err, tt.wantErr)
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func checkErr(t *testing.T, err error, wantErr string) {
	t.Helper()
	switch {
	case wantErr == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case wantErr != "" && err == nil:
		t.Fatalf("no error, want %q", wantErr)
	case wantErr != "" && !strings.Contains(err.Error(), wantErr):
		t.Fatalf("error %q does not contain %q", err, wantErr)
	}
}
