package main

import (
	"os"
	"strings"
	"testing"
)

// The README's configuration reference is the example file, verbatim.
func TestReadmeConfigReference(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile("testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(readme), "<!-- example.yaml begin -->\n```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```\n<!-- example.yaml end -->")
	if !ok || !ok2 {
		t.Fatal("README lacks the example.yaml block")
	}
	if block != string(example) {
		t.Error("README's configuration block differs from testdata/example.yaml; copy the file into it")
	}
}
