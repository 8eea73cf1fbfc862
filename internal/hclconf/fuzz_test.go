package hclconf_test

import (
	"testing"

	"github.com/hashicorp/hcl/v2"

	"github.com/hallmarkid/hallmark/internal/hclconf"
)

// FuzzDecodeBlock parses arbitrary files and strictly decodes every
// node_attestor body found into a struct with fields of every supported
// shape.
func FuzzDecodeBlock(f *testing.F) {
	for _, s := range []string{
		"",
		`node_attestor "tpm" { path = "/x" }`,
		`node_attestor "tpm" {
  path = "/x"
  port = 8
  enabled = true
  ratio = 0.5
  roles = ["a", 1]
  pcrs = [0, 7.5]
  tags = { env = "prod", n = 1 }
  optional = null
  rule "r1" { value = "1" }
  limit { max = 3 }
  limit { max = 4 }
}`,
		`node_attestor "tpm" { path = env.X port = "8" bogus {} }`,
		`node_attestor "a" {} node_attestor "a" {} node_attestor "B" {}`,
		"node_attestor \"x\" {\n  path = <<EOT\n${a}\nEOT\n}",
	} {
		f.Add([]byte(s))
	}
	schema := &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "node_attestor", LabelNames: []string{"kind"}}}}
	f.Fuzz(func(t *testing.T, src []byte) {
		file, diags := hclconf.ParseFile("fuzz.hcl", src)
		if diags.HasErrors() {
			if err := hclconf.DiagError("p", diags); err == nil {
				t.Fatal("errors lost")
			}
			return
		}
		content, _, diags := file.Body.PartialContent(schema)
		for _, b := range hclconf.Labelled(content.Blocks, "node_attestor", &diags) {
			var c attestorConfig
			if err := hclconf.DecodeBlock(b, &c); err != nil {
				_ = err.Error()
			}
		}
		_ = hclconf.DiagError("p", diags)
	})
}
