package imapwire

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// fetchClassOf parses and checks one FETCH in testCtx and returns its
// class and ContentItems.
func fetchClassOf(t *testing.T, items string) (FetchClass, bool, error) {
	t.Helper()
	var p CommandParser
	wire := "A UID FETCH 1 " + items + "\r\n"
	if _, err := parseWire(&p, wire); err != nil {
		return 0, false, err
	}
	ctx := testCtx
	if err := p.Check(&ctx); err != nil {
		return 0, false, err
	}
	c := p.Command()
	return c.FetchClass, c.ContentItems, nil
}

// TestFetchClass: a FETCH's class is the highest of its items' (the
// audit files it so: "audit query --fetch body" asks it), SNIPPET's too.
func TestFetchClass(t *testing.T) {
	for _, tc := range []struct {
		items string
		want  FetchClass
	}{
		{"(FLAGS UID)", FetchMetadata},
		{"FAST", FetchMetadata},
		{"(RFC822.SIZE INTERNALDATE BINARY.SIZE[1] MODSEQ EMAILID SAVEDATE)", FetchMetadata},
		{"(FLAGS BODYSTRUCTURE)", FetchHeader},
		{"BODY", FetchHeader},
		{"ENVELOPE", FetchHeader},
		{"ALL", FetchHeader},
		{"FULL", FetchHeader},
		{"(UID BODY.PEEK[HEADER.FIELDS (FROM TO SUBJECT)])", FetchHeader},
		{"BODY[1.2.MIME]", FetchHeader},
		{"BODY.PEEK[1.HEADER]", FetchHeader},
		{"RFC822.HEADER", FetchHeader},
		{"BODY.PEEK[]", FetchBody},
		{"(ENVELOPE BODY[TEXT]<0.2048>)", FetchBody},
		{"BODY[1]", FetchBody},
		{"BINARY.PEEK[1]", FetchBody},
		{"RFC822", FetchBody},
		{"PREVIEW", FetchBody},
		{"(PREVIEW (LAZY))", FetchBody},
		{"SNIPPET", FetchBody},
		{"(UID SNIPPET (LAZY=FUZZY))", FetchBody},
	} {
		got, _, err := fetchClassOf(t, tc.items)
		if err != nil || got != tc.want {
			t.Errorf("FETCH %s: class %d (%v), want %d", tc.items, got, err, tc.want)
		}
	}
}

// TestFetchClassEveryItem generates every FETCH item the parser accepts
// (the table's, the macros, and body and BINARY sections of each shape)
// and holds its class to what the response tracker reads of the answer:
// an item whose answer the tracker counts as content or header is body
// or header, one it counts as neither is metadata, and none is
// unclassified. So an item added to the grammar without a class, or
// classified otherwise than the caps read its answer, fails here.
func TestFetchClassEveryItem(t *testing.T) {
	var items []string
	for it := range fetchItems {
		items = append(items, it)
	}
	slices.Sort(items)
	items = append(items, "PREVIEW (LAZY)", "SNIPPET (LAZY=FUZZY)")
	sections := []string{"", "TEXT", "HEADER", "HEADER.FIELDS (FROM)", "HEADER.FIELDS.NOT (FROM TO)", "MIME",
		"1", "1.2", "1.TEXT", "1.HEADER", "2.MIME", "1.2.HEADER.FIELDS (SUBJECT)", "3.TEXT"}
	for _, name := range []string{"BODY", "BODY.PEEK", "BINARY", "BINARY.PEEK", "BINARY.SIZE"} {
		for _, s := range sections {
			for _, partial := range []string{"", "<0.10>"} {
				items = append(items, name+"["+s+"]"+partial)
			}
		}
	}
	accepted := 0
	for _, it := range items {
		class, content, err := fetchClassOf(t, "("+it+")")
		if err != nil {
			continue // not an item the parser accepts
		}
		accepted++
		if class == FetchUnknown {
			t.Errorf("FETCH (%s) has no class", it)
			continue
		}
		// The answer's item name: no .PEEK, a partial as its origin
		// (RFC 9051 §7.5.2), no PREVIEW/SNIPPET modifiers.
		name, _, _ := strings.Cut(it, " (")
		name = strings.Replace(name, ".PEEK[", "[", 1)
		if i := strings.Index(name, "]<"); i >= 0 {
			name = name[:i] + "]<0>"
		}
		tr, _ := runTracker(t, fmt.Sprintf("* 1 FETCH (UID 1 %s \"abc\")\r\n", name), 4096)
		switch {
		case tr.Items > 0 && (!content || class == FetchMetadata):
			t.Errorf("FETCH (%s): its answer %s is content to the tracker, but the class is %d, ContentItems %v", it, name, class, content)
		case tr.Headers > 0 && class != FetchHeader:
			t.Errorf("FETCH (%s): its answer %s is a header item to the tracker, but the class is %d", it, name, class)
		case tr.Items == 0 && tr.Headers == 0 && (content || class != FetchMetadata):
			t.Errorf("FETCH (%s): its answer %s carries no content to the tracker, but the class is %d, ContentItems %v", it, name, class, content)
		}
	}
	if accepted < len(fetchItems)+30 {
		t.Errorf("only %d of %d generated items accepted: the generator no longer reaches the grammar", accepted, len(items))
	}
}
