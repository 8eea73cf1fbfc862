package confexample

import (
	"slices"
	"testing"
)

func TestUncomment(t *testing.T) {
	src := "a = 1\n# k8s_registrar {\n#   cluster = \"c\"\n# }\n# not a block\n# node_attestor \"tpm\" {\n# }\n# open {\n"
	got := Uncomment(src)
	want := []string{"k8s_registrar {\n  cluster = \"c\"\n}", "node_attestor \"tpm\" {\n}"}
	if !slices.Equal(got, want) {
		t.Fatalf("Uncomment = %q, want %q", got, want)
	}
	for i, k := range []string{"k8s_registrar", "node_attestor"} {
		if Kind(got[i]) != k {
			t.Errorf("Kind(%q) = %q, want %q", got[i], Kind(got[i]), k)
		}
	}
	if Kind("x = 1") != "" {
		t.Error("Kind of a non-block is not empty")
	}
}
