package policy

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseGroups(t *testing.T) {
	got, err := parseGroups([]byte(`
# group: members
admins: [Alice, root]
contractors:
  - carol
readonly: dave, erin  alice
empty:
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"alice": {"admins", "readonly"},
		"root":  {"admins"},
		"carol": {"contractors"},
		"dave":  {"readonly"},
		"erin":  {"readonly"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("groups %v, want %v", got, want)
	}
	if g, err := parseGroups(nil); err != nil || len(g) != 0 {
		t.Fatalf("empty file: %v %v", g, err)
	}
	for _, bad := range []string{"admins: {a: b}\n", "admins: [[x]]\n", "- a\n", "admins: [\n"} {
		if _, err := parseGroups([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if _, err := LoadGroups(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "groups file") {
		t.Errorf("missing file: %v", err)
	}
}

func TestNormalizeGroups(t *testing.T) {
	got := normalizeGroups(map[string][]string{"Alice": {"b", "a"}}, map[string][]string{"alice": {"a", "c"}})
	if want := map[string][]string{"alice": {"a", "b", "c"}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("%v, want %v", got, want)
	}
}
