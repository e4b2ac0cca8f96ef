package main

// The configuration is decoded from yaml.v3's node tree by reflection
// rather than by yaml.v3's own decoder, which stops at the first error a
// TextUnmarshaler returns (a rate such as "60 per minute") and names lines
// but never keys. Walking the nodes gives every problem its line and its key
// path, all in one run, and leaves an index of where each key is written so
// that build's problems (which name keys) get lines too.

import (
	"encoding"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// configSource is where a fileConfig came from.
type configSource struct {
	file string
	// lines maps each key path written in the file ("listeners[0].mode")
	// to its line; "" is the document.
	lines map[string]int
	// problems are the decoding problems, reported with build's.
	problems problems
}

// line is the line of key, or of its nearest written ancestor: a missing
// key is reported where its parent is written.
func (s *configSource) line(key string) int {
	for {
		if l, ok := s.lines[key]; ok {
			return l
		}
		if key == "" {
			return 0
		}
		key = parentKey(key)
	}
}

// parentKey drops the last element of a key path: "a.b[2]" → "a.b" → "a".
func parentKey(key string) string {
	i := strings.LastIndexAny(key, ".[")
	if i < 0 {
		return ""
	}
	return key[:i]
}

// under reports whether key is k or inside it.
func under(key, k string) bool {
	return key == k || k == "" || (strings.HasPrefix(key, k) && (key[len(k)] == '.' || key[len(k)] == '['))
}

// nodeDecoder fills Go values from nodes, collecting problems.
type nodeDecoder struct {
	src *configSource
}

func (d *nodeDecoder) fail(n *yaml.Node, key, format string, args ...any) {
	d.src.problems = append(d.src.problems, problem{Key: key, Line: n.Line, Msg: fmt.Sprintf(format, args...)})
}

func joinKey(parent, k string) string {
	if parent == "" {
		return k
	}
	return parent + "." + k
}

var (
	unmarshalerType     = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// decode stores n into v (addressable) at key path key.
func (d *nodeDecoder) decode(n *yaml.Node, v reflect.Value, key string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	if v.Kind() == reflect.Pointer {
		if null {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		v = v.Elem()
	}
	if null {
		v.SetZero()
		return
	}
	pt := v.Addr().Type()
	switch {
	case pt.Implements(unmarshalerType):
		if err := v.Addr().Interface().(yaml.Unmarshaler).UnmarshalYAML(n); err != nil {
			d.fail(n, key, "%s", valueMessage(err))
		}
		return
	case pt.Implements(textUnmarshalerType):
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want a single value, got %s", kindName(n))
			return
		}
		if err := v.Addr().Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(n.Value)); err != nil {
			d.fail(n, key, "%s", valueMessage(err))
		}
		return
	}
	switch v.Kind() {
	case reflect.Struct:
		fields := structFields(v.Type())
		d.mapping(n, key, func(k string, kn, vn *yaml.Node) {
			i, ok := fields[k]
			if !ok {
				d.fail(kn, joinKey(key, k), "unknown key%s", suggest(k, fields))
				return
			}
			d.decode(vn, v.Field(i), joinKey(key, k))
		})
	case reflect.Map:
		if v.Type().Key().Kind() != reflect.String {
			panic("config: map keys must be strings")
		}
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		d.mapping(n, key, func(k string, kn, vn *yaml.Node) {
			e := reflect.New(v.Type().Elem()).Elem()
			d.decode(vn, e, joinKey(key, k))
			v.SetMapIndex(reflect.ValueOf(k).Convert(v.Type().Key()), e)
		})
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, key, "want a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			k := fmt.Sprintf("%s[%d]", key, i)
			d.src.lines[k] = item.Line
			d.decode(item, s.Index(i), k)
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, key, "want %s, got %s", typeName(v.Type()), kindName(n))
			return
		}
		// yaml.v3's own rules for scalars (quoting, booleans, bases).
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, key, "want %s, got %q", typeName(v.Type()), n.Value)
		}
	}
}

// mapping calls f for each key of a mapping node, refusing duplicates and
// following merge keys ("<<: *defaults"), whose keys the explicit ones
// override.
func (d *nodeDecoder) mapping(n *yaml.Node, key string, f func(k string, kn, vn *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, key, "want a mapping of keys, got %s", kindName(n))
		return
	}
	seen := map[string]int{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			merges = append(merges, vn)
		}
	}
	for _, m := range merges {
		if m.Kind == yaml.AliasNode {
			m = m.Alias
		}
		ms := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			ms = m.Content
		}
		for _, mm := range ms {
			d.mapping(mm, key, f)
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		kn, vn := n.Content[i], n.Content[i+1]
		if kn.Kind == yaml.ScalarNode && kn.ShortTag() == "!!merge" {
			continue
		}
		if kn.Kind != yaml.ScalarNode {
			d.fail(kn, key, "a key must be a plain value, got %s", kindName(kn))
			continue
		}
		k := kn.Value
		if l, dup := seen[k]; dup {
			d.fail(kn, joinKey(key, k), "written twice (first at line %d)", l)
			continue
		}
		seen[k] = kn.Line
		d.src.lines[joinKey(key, k)] = kn.Line
		f(k, kn, vn)
	}
}

var fieldCache sync.Map // reflect.Type → map[string]int

// structFields maps the YAML keys of a struct to field indexes, by the yaml
// tag or, as yaml.v3 does, the lower-cased field name.
func structFields(t reflect.Type) map[string]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]int)
	}
	m := map[string]int{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "-" {
			continue
		}
		if strings.Contains(opts, "inline") {
			panic("config: inline fields are not supported: " + t.String() + "." + f.Name)
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		m[name] = i
	}
	fieldCache.Store(t, m)
	return m
}

// suggest names the known key closest to an unknown one, if it is close.
func suggest(k string, known map[string]int) string {
	best, bestD := "", 3 // at most two edits
	for name := range known {
		if d := editDistance(k, name); d < bestD || (d == bestD && name < best) {
			best, bestD = name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c = 1 + min(c, prev[j], cur[j-1])
			}
			cur[j] = c
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return strconv.Quote(n.Value)
	}
	return "something else"
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number, not negative"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	}
	return "a " + t.String()
}

// valueMessage is an unmarshaler's error without the package prefixes a
// reader of the configuration has no use for.
func valueMessage(err error) string {
	s := err.Error()
	for _, p := range []string{"yaml: ", "ratelimit: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}
