package policy

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/proxy"
)

// LoadGroups reads a groups file: a YAML mapping from group name to its
// members, each a list or a string of names separated by spaces or commas,
// so that the plain text form "group: user1 user2" is read too:
//
//	admins: [alice, root]
//	contractors:
//	  - carol
//	readonly: dave erin
//
// It returns the groups of each user, user names folded (proxy.FoldUser,
// the one name of a login, ARCHITECTURE.md §17).
func LoadGroups(path string) (map[string][]string, error) {
	// Polled and applied live: a file others may change is refused.
	if err := filemode.Trusted(path); err != nil {
		return nil, fmt.Errorf("policy: groups file: %w", err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy: groups file: %w", err)
	}
	g, err := parseGroups(b)
	if err != nil {
		return nil, fmt.Errorf("policy: groups file %s: %w", path, err)
	}
	return g, nil
}

func parseGroups(b []byte) (map[string][]string, error) {
	var doc map[string]any
	if len(bytes.TrimSpace(b)) > 0 {
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, err
		}
	}
	byGroup := map[string][]string{}
	for group, members := range doc {
		if group == "" {
			return nil, fmt.Errorf("empty group name")
		}
		switch m := members.(type) {
		case nil:
		case string:
			byGroup[group] = strings.FieldsFunc(m, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
		case []any:
			for _, u := range m {
				s, ok := u.(string)
				if !ok {
					return nil, fmt.Errorf("group %s: member %v is not a name", group, u)
				}
				byGroup[group] = append(byGroup[group], s)
			}
		default:
			return nil, fmt.Errorf("group %s: members must be a list or a string of names", group)
		}
	}
	users := map[string][]string{}
	for group, members := range byGroup {
		for _, u := range members {
			u = proxy.FoldUser(strings.TrimSpace(u))
			if u != "" {
				users[u] = append(users[u], group)
			}
		}
	}
	return normalizeGroups(users, nil), nil
}

// normalizeGroups merges user → groups maps: user names folded, each
// user's groups sorted and without duplicates, so that input.session.groups
// and the cache key are the same for the same memberships.
func normalizeGroups(maps ...map[string][]string) map[string][]string {
	out := map[string][]string{}
	for _, m := range maps {
		for u, gs := range m {
			u = proxy.FoldUser(u)
			out[u] = append(out[u], gs...)
		}
	}
	for u, gs := range out {
		slices.Sort(gs)
		out[u] = slices.Compact(gs)
	}
	return out
}
