package main

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"strings"

	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/pool"
)

// backendServers checks a backend's address or servers list and returns
// its servers (without TLS yet).
func backendServers(p *problems, key string, c *backendConfig) []pool.ServerOptions {
	switch {
	case c.Address != "" && len(c.Servers) > 0:
		p.add("%s: address and servers exclude each other; list the address under servers", key)
		return nil
	case c.Address != "":
		if err := checkHostPort(c.Address, false); err != nil {
			p.add("%s.address: %v", key, err)
			return nil
		}
		return []pool.ServerOptions{{Addr: c.Address, Weight: 1}}
	case len(c.Servers) == 0:
		p.add("%s.address: required, such as \"10.0.0.5:143\" (or servers, a list of them)", key)
		return nil
	}
	var out []pool.ServerOptions
	names := map[string]int{}
	for i, sc := range c.Servers {
		sk := fmt.Sprintf("%s.servers[%d]", key, i)
		if sc.Address == "" {
			p.add("%s.address: required, such as \"10.0.0.5:143\"", sk)
			continue
		}
		if err := checkHostPort(sc.Address, false); err != nil {
			p.add("%s.address: %v", sk, err)
			continue
		}
		name := sc.Name
		if name == "" {
			name = sc.Address
		}
		// Names travel in admin URLs and metric labels.
		if strings.ContainsAny(name, "/?#% \t\r\n") {
			p.add("%s.name: %q: no spaces or any of / ? # %%", sk, name)
			continue
		}
		if j, dup := names[name]; dup {
			p.add("%s: %q is also servers[%d]; give each server its own name and address", sk, name, j)
			continue
		}
		names[name] = i
		w := 1
		if sc.Weight != nil {
			w = *sc.Weight
			if w < 1 || w > 1000 {
				p.add("%s.weight: %d: want 1 to 1000", sk, w)
				continue
			}
		}
		out = append(out, pool.ServerOptions{Name: sc.Name, Addr: sc.Address, Weight: w})
	}
	return out
}

// buildPool makes a backend's pool from its template and servers.
func buildPool(p *problems, name string, c *backendConfig, tmpl *proxy.Backend, servers []pool.ServerOptions) *pool.Pool {
	key := "backends." + name
	h := c.Health
	positive := func(k string, d *duration, def string) {
		if d != nil && *d <= 0 {
			p.add("%s.health.%s: must be positive, got %v (default %s)", key, k, *d, def)
		}
	}
	positive("interval", h.Interval, "5s")
	positive("fast_interval", h.FastInterval, "1s")
	positive("timeout", h.Timeout, "5s")
	count := func(k string, v *int) int {
		if v == nil {
			return 0
		}
		if *v < 1 || *v > 100 {
			p.add("%s.health.%s: %d: want 1 to 100", key, k, *v)
		}
		return *v
	}
	ho := pool.HealthOptions{
		Disabled:     h.Enabled != nil && !*h.Enabled,
		Interval:     h.Interval.get(0),
		FastInterval: h.FastInterval.get(0),
		Timeout:      h.Timeout.get(0),
		Rise:         count("rise", h.Rise),
		Fall:         count("fall", h.Fall),
		NoStartTLS:   h.StartTLS != nil && !*h.StartTLS,
		NoCapability: h.Capability != nil && !*h.Capability,
	}
	if c.MaxLoad != 0 && c.MaxLoad < 1 {
		p.add("%s.max_load: %v: want 0 (off) or at least 1, such as 1.25", key, c.MaxLoad)
		return nil
	}
	pl, err := pool.New(pool.Options{Backend: tmpl, Servers: servers, Health: ho, MaxLoad: c.MaxLoad})
	if err != nil {
		p.add("%s: %v", key, err)
		return nil
	}
	return pl
}

// buildRouting puts the pools and the lookup service in front of the
// routes (static or policy): s.opts.Router becomes a pool.Router.
func buildRouting(p *problems, s *setup, c routesConfig) {
	set, err := pool.NewSet(s.poolList...)
	if err != nil {
		p.add("backends: %v", err)
		return
	}
	s.pools = set
	set.Require(requiredBackends(c)...)
	if lc := c.Lookup; lc != nil && lc.URL != "" {
		o := pool.LookupOptions{URL: lc.URL, Timeout: lc.Timeout.get(0), CacheTTL: lc.CacheTTL.get(0),
			MaxWait: lc.MaxWait.get(0), SendPassword: lc.SendPassword}
		if lc.CacheSize != nil {
			if *lc.CacheSize < 1 {
				p.add("routes.lookup.cache_size: must be positive, got %d", *lc.CacheSize)
			}
			o.CacheSize = *lc.CacheSize
		}
		for k, d := range map[string]*duration{"timeout": lc.Timeout, "max_wait": lc.MaxWait} {
			if d != nil && *d <= 0 {
				p.add("routes.lookup.%s: must be positive, got %v", k, *d)
			}
		}
		if lc.CAFile != "" {
			roots, err := caPool(lc.CAFile)
			if err != nil {
				p.add("routes.lookup.ca_file: %v", err)
				return
			}
			o.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots}
		}
		if len(lc.Headers) > 0 {
			o.Header = http.Header{}
			for k, v := range lc.Headers {
				if strings.HasPrefix(strings.ToLower(k), "auth-") || strings.HasPrefix(strings.ToLower(k), "client-") {
					p.add("routes.lookup.headers.%s: the proxy sets Auth-* and Client-* itself", k)
				}
				o.Header.Set(k, v)
			}
		}
		l, err := pool.NewLookup(o)
		if err != nil {
			p.add("routes.lookup.url: %v", err)
			return
		}
		s.lookup = l
	}
	s.opts.Router = &pool.Router{Set: s.pools, Lookup: s.lookup, Next: s.opts.Router}
}

// reloadRouter is the router of a reloaded configuration ns: policy routes
// go to the running engine (which re-read its files).
func reloadRouter(ns *setup, engine *policy.Engine) proxy.Router {
	pr, ok := ns.opts.Router.(*pool.Router)
	if !ok {
		return ns.opts.Router
	}
	next := pr.Next
	if _, ok := next.(*policy.Router); ok && engine != nil {
		next = &policy.Router{Engine: engine, Backends: ns.backends, Fallback: ns.static}
	}
	return &pool.Router{Set: pr.Set, Lookup: pr.Lookup, Next: next}
}

// requiredBackends are the backends whose loss leaves the listeners'
// traffic nowhere to go: the default route's.
func requiredBackends(c routesConfig) []string {
	if c.Default != "" {
		return []string{c.Default}
	}
	return nil
}
