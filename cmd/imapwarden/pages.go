package main

import (
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// listArgs are the arguments of a list (GET /sessions, GET
// /ratelimit/lockouts, the console's Sessions and Lockouts pages): a
// filter and a page. An outsider makes sessions and lockouts at will, so
// a list is never shown whole: at most admin.page_size rows, with the
// total that matched (ARCHITECTURE.md §12).
var listArgs = []string{"user", "ip", "offset", "limit"}

// listQuery is a list's filter and page, read strictly (readListQuery).
type listQuery struct {
	User   string // given: rows whose folded user holds it, folded
	IP     string // as given: an address (its host, ratelimit.Hosts) or a prefix
	Offset int    // rows skipped
	Limit  int    // rows shown, 1 to admin.page_size

	host  netip.Addr   // IP's host, when an address
	net   netip.Prefix // IP, when a prefix
	hosts ratelimit.Hosts
}

// readListQuery reads args (adminArgs's reading of listArgs): numbers are
// decimal digits without a sign or leading zero; ip is an address or a
// prefix. Anything else is refused, never guessed.
func readListQuery(args map[string]string, pageSize int, hosts ratelimit.Hosts) (listQuery, error) {
	q := listQuery{User: proxy.FoldUser(args["user"]), IP: args["ip"], Limit: pageSize, hosts: hosts}
	num := func(k string, min, max int) (int, error) {
		v := args[k]
		n, err := strconv.Atoi(v)
		if err != nil || v == "" || v[0] < '0' || v[0] > '9' || len(v) > 1 && v[0] == '0' || n < min || n > max {
			return 0, fmt.Errorf("%q: want a decimal number from %d to %d, got %q", k, min, max, v)
		}
		return n, nil
	}
	var err error
	if _, ok := args["offset"]; ok {
		if q.Offset, err = num("offset", 0, 1<<30); err != nil {
			return q, err
		}
	}
	if _, ok := args["limit"]; ok {
		if q.Limit, err = num("limit", 1, pageSize); err != nil {
			return q, fmt.Errorf("%w (admin.page_size)", err)
		}
	}
	if q.IP != "" {
		if strings.Contains(q.IP, "/") {
			p, err := netip.ParsePrefix(q.IP)
			if err != nil || p != p.Masked() || p.Addr().Is4In6() {
				return q, fmt.Errorf("%q: want an address or a masked prefix (192.0.2.0/24, 2001:db8::/48), got %q", "ip", q.IP)
			}
			q.net = p
		} else {
			a, err := netip.ParseAddr(q.IP)
			if err != nil || a.Zone() != "" {
				return q, fmt.Errorf("%q: want an address or a masked prefix (192.0.2.0/24, 2001:db8::/48), got %q", "ip", q.IP)
			}
			q.host = hosts.Of(netip.AddrPortFrom(a, 0))
		}
	}
	return q, nil
}

// listQueryFrom reads a console page's query: the same arguments, each
// known and given once, as the API reads them.
func listQueryFrom(raw string, pageSize int, hosts ratelimit.Hosts) (listQuery, error) {
	vs, err := url.ParseQuery(raw)
	if err != nil {
		return listQuery{Limit: pageSize, hosts: hosts}, fmt.Errorf("query: %v", err)
	}
	args := map[string]string{}
	for k, v := range vs {
		if !slices.Contains(listArgs, k) {
			return listQuery{Limit: pageSize, hosts: hosts}, fmt.Errorf("%q: unknown argument (want %s)", k, strings.Join(listArgs, ", "))
		}
		if len(v) > 1 {
			return listQuery{Limit: pageSize, hosts: hosts}, fmt.Errorf("%q given %d times", k, len(v))
		}
		args[k] = v[0]
	}
	if err := checkArgs(args); err != nil {
		return listQuery{Limit: pageSize, hosts: hosts}, err
	}
	return readListQuery(args, pageSize, hosts)
}

// matches reports whether a row of user (folded or not) from addr (a
// client's address or host; invalid: none) is one the query asks for.
func (q *listQuery) matches(user string, addr netip.Addr) bool {
	if q.User != "" && !strings.Contains(proxy.FoldUser(user), q.User) {
		return false
	}
	switch {
	case q.host.IsValid():
		return addr.IsValid() && q.hosts.Of(netip.AddrPortFrom(addr, 0)) == q.host
	case q.net.IsValid():
		return addr.IsValid() && q.net.Contains(addr.Unmap())
	}
	return true
}

// listPage is the rows of a list the query shows, and how many matched.
type listPage[T any] struct {
	Rows   []T
	Total  int // rows that match the filter
	Offset int
	Limit  int
}

// pageOf is q's page of all (in the order given), filtered by row: the
// rows' user and address.
func pageOf[T any](all []T, q listQuery, row func(T) (user string, addr netip.Addr)) listPage[T] {
	p := listPage[T]{Rows: []T{}, Offset: q.Offset, Limit: q.Limit}
	for _, x := range all {
		if !q.matches(row(x)) {
			continue
		}
		if p.Total >= q.Offset && len(p.Rows) < q.Limit {
			p.Rows = append(p.Rows, x)
		}
		p.Total++
	}
	return p
}

// Next and Prev are the offsets of the pages around this one; -1 when
// there is none.
func (p listPage[T]) Next() int {
	if p.Offset+p.Limit >= p.Total {
		return -1
	}
	return p.Offset + p.Limit
}

func (p listPage[T]) Prev() int {
	if p.Offset == 0 {
		return -1
	}
	return max(p.Offset-p.Limit, 0)
}

// First is the 1-based number of the page's first row (0 when empty).
func (p listPage[T]) First() int {
	if len(p.Rows) == 0 {
		return 0
	}
	return p.Offset + 1
}

// Last is the number of the page's last row.
func (p listPage[T]) Last() int { return p.Offset + len(p.Rows) }

// At is the query string of this query's page at offset, for a link.
func (q listQuery) At(offset int) string {
	v := url.Values{}
	if q.User != "" {
		v.Set("user", q.User)
	}
	if q.IP != "" {
		v.Set("ip", q.IP)
	}
	if offset > 0 {
		v.Set("offset", strconv.Itoa(offset))
	}
	return "?" + v.Encode()
}

// sessionRow and lockoutRow are what a list filters a row by.
func sessionRow(s proxy.SessionSnapshot) (string, netip.Addr) {
	ap, _ := netip.ParseAddrPort(s.Client)
	return s.User, ap.Addr()
}

func lockoutRow(l ratelimit.Lockout) (string, netip.Addr) {
	a, _ := netip.ParseAddr(l.IP)
	return l.User, a
}

// sortSessions orders sessions oldest first, so that pages follow.
func sortSessions(list []proxy.SessionSnapshot) {
	slices.SortFunc(list, func(a, b proxy.SessionSnapshot) int {
		if c := a.Since.Compare(b.Since); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}
