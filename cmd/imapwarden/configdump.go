package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.yaml.in/yaml/v3"

	"github.com/imapwarden/imapwarden/audit"
	"github.com/imapwarden/imapwarden/policy"
	"github.com/imapwarden/imapwarden/proxy"
	"github.com/imapwarden/imapwarden/proxy/imapwire"
	"github.com/imapwarden/imapwarden/proxy/ratelimit"
)

// The effective configuration: the file with every default the command
// knows filled in, secrets redacted. GET /config and "imapwarden config
// dump" print the same YAML.

// effectiveConfig returns a copy of cfg with defaults filled in. cfg is
// not changed.
func effectiveConfig(cfg *fileConfig) *fileConfig {
	e := *cfg
	dur := func(d **duration, def time.Duration) {
		if *d == nil {
			v := duration(def)
			*d = &v
		}
	}
	size := func(b **byteSize, def int64) {
		if *b == nil {
			v := byteSize(def)
			*b = &v
		}
	}
	count := func(n **int, def int) {
		if *n == nil {
			*n = &def
		}
	}
	str := func(s *string, def string) {
		if *s == "" {
			*s = def
		}
	}
	dur(&e.DrainTimeout, defaultDrainTimeout)
	dur(&e.DrainCutGrace, proxy.DefaultCutGrace)
	dur(&e.LameDuck, defaultLameDuck)
	str(&e.Log.Level, "info")
	str(&e.Log.Format, "json")
	dur(&e.TLS.ReloadInterval, defaultReloadInterval)
	str(&e.TLS.MinVersion, "1.2")

	if e.Admin.Address == nil {
		a := defaultAdminAddress
		e.Admin.Address = &a
	}
	dur(&e.Admin.ReadHeaderTimeout, defaultAdminTimeouts.ReadHeader)
	dur(&e.Admin.ReadTimeout, defaultAdminTimeouts.Read)
	dur(&e.Admin.WriteTimeout, defaultAdminTimeouts.Write)
	dur(&e.Admin.IdleTimeout, defaultAdminTimeouts.Idle)
	count(&e.Admin.MaxConnections, defaultAdminTimeouts.MaxConnections)
	count(&e.Admin.MaxBodyBytes, int(defaultAdminTimeouts.MaxBodyBytes))
	count(&e.Admin.MaxHeaderBytes, defaultAdminTimeouts.MaxHeaderBytes)
	dur(&e.Admin.ConsoleSessionTTL, defaultAdminLimits.ConsoleSessionTTL)
	count(&e.Admin.ConsoleMaxSessions, defaultAdminLimits.ConsoleMaxSessions)
	count(&e.Admin.PageSize, defaultAdminLimits.PageSize)
	count(&e.Admin.TokenFailureHosts, defaultAdminLimits.TokenFailureHosts)
	count(&e.Admin.AuditSearches, defaultAdminLimits.AuditSearches)
	count(&e.Admin.RecentEvents, defaultAdminLimits.RecentEvents)

	e.Backends = make(map[string]*backendConfig, len(cfg.Backends))
	for name, b := range cfg.Backends {
		if b == nil {
			continue
		}
		c := *b
		str(&c.Login, "auto")
		dur(&c.ConnectTimeout, proxy.DefaultConnectTimeout)
		dur(&c.LoginTimeout, proxy.DefaultLoginTimeout)
		e.Backends[name] = &c
	}

	l := &e.Limits
	size(&l.MaxLine, proxy.DefaultMaxLine)
	size(&l.MaxBufferedLiteral, proxy.DefaultMaxBufferedLiteral)
	size(&l.MaxAppendLiteral, proxy.DefaultMaxAppendLiteral)
	size(&l.MaxCommandBytes, proxy.DefaultMaxCommandBytes)
	size(&l.MaxPreAuthCommandBytes, proxy.DefaultMaxPreAuthCommandBytes)
	count(&l.MaxPreAuthCommands, proxy.DefaultMaxPreAuthCommands)
	dur(&l.PreAuthIdle, proxy.DefaultPreAuthIdle)
	dur(&l.AuthIdle, proxy.DefaultAuthIdle)
	dur(&l.IdleTimeout, proxy.DefaultIdleTimeout)
	dur(&l.WriteTimeout, proxy.DefaultWriteTimeout)
	count(&l.MaxAuthFailures, proxy.DefaultMaxAuthFailures)
	size(&l.MaxCredentialBytes, proxy.DefaultMaxCredentialBytes)
	count(&l.MaxCompressSessions, proxy.DefaultMaxCompressSessions)
	count(&l.MaxPreAuthConnections, proxy.DefaultMaxPreAuthConnections())
	count(&l.MaxInflight, proxy.DefaultMaxInflight)
	size(&l.MaxInflightBytes, proxy.DefaultMaxInflightBytes)
	dur(&l.BackendTimeout, proxy.DefaultBackendTimeout)
	size(&l.MaxResponseLine, proxy.DefaultMaxResponseLine)
	dur(&l.ParkAfter, proxy.DefaultParkAfter)
	count(&l.MaxAuditUIDs, proxy.DefaultMaxAuditUIDs)
	count(&l.MaxAuditSharedWith, proxy.DefaultMaxAuditSharedWith)
	count(&l.MaxTag, imapwire.DefaultMaxTag)
	count(&l.MaxListDepth, imapwire.DefaultMaxListDepth)
	count(&l.MaxArguments, imapwire.DefaultMaxArguments)
	count(&l.MaxSearchDepth, imapwire.DefaultMaxSearchDepth)
	if a := &e.Audit; a.Sink != "" || a.Path != "" {
		// With a trail, what its records hold decides both (auditbuild.go).
		o := audit.Options{MaxFieldBytes: a.MaxFieldBytes, MaxListItems: a.MaxListItems, MaxRecordBytes: a.MaxRecordBytes, Logger: zap.NewNop()}
		if l.MaxAuditMailboxNames != nil {
			o.MaxMailboxNames = *l.MaxAuditMailboxNames
		}
		if l.MaxAuditNameBytes != nil {
			o.MaxNameBytes = *l.MaxAuditNameBytes
		}
		if names, nameBytes, err := audit.CheckCaps(o); err == nil {
			count(&l.MaxAuditMailboxNames, names)
			count(&l.MaxAuditNameBytes, nameBytes)
		}
	}
	count(&l.MaxAuditMailboxNames, proxy.DefaultMaxAuditMailboxNames)
	count(&l.MaxAuditNameBytes, proxy.DefaultMaxAuditNameBytes)

	if len(e.Policy.Dirs) > 0 {
		str(&e.Policy.TimeZone, "UTC")
		dur(&e.Policy.PollInterval, policy.DefaultPollInterval)
		dur(&e.Policy.EvalTimeout, policy.DefaultEvalTimeout)
	}

	if a := &e.Audit; a.Sink != "" || a.Path != "" {
		str(&a.Sink, "file")
		str(&a.Fsync, "interval")
		str(&a.OnFull, "block")
		dur(&a.FsyncInterval, audit.DefaultSyncInterval)
		if a.QueueSize == 0 {
			a.QueueSize = audit.DefaultQueueSize
		}
		for _, v := range []struct {
			p   *int
			def int
		}{{&a.MaxFieldBytes, audit.DefaultMaxFieldBytes}, {&a.MaxListItems, audit.DefaultMaxListItems}, {&a.MaxRecordBytes, audit.DefaultMaxRecordBytes}} {
			if *v.p == 0 {
				*v.p = v.def
			}
		}
		if a.Sink == "file" {
			size(&a.MaxSize, audit.DefaultMaxSize)
		}
		if a.Sink == "syslog" {
			str(&a.Syslog.Network, "unix")
			str(&a.Syslog.Address, "/dev/log")
		}
	}

	r := &e.RateLimits
	if r.Enabled == nil {
		on := true
		r.Enabled = &on
	}
	if *r.Enabled {
		rate := func(v *ratelimit.Rate, def ratelimit.Rate) {
			if *v == (ratelimit.Rate{}) {
				*v = def
			}
		}
		num := func(v *int, def int) {
			if *v == 0 {
				*v = def
			}
		}
		rate(&r.ConnectionsPerIP, ratelimit.DefaultConnectionsPerIP)
		rate(&r.ConnectionsPerSubnet, ratelimit.DefaultConnectionsPerSubnet)
		rate(&r.CommandsPerSession, ratelimit.DefaultCommandsPerSession)
		rate(&r.CommandsPerUser, ratelimit.DefaultCommandsPerUser)
		rate(&r.FetchBytesPerUser, ratelimit.DefaultFetchBytesPerUser)
		rate(&r.FetchMessagesPerUser, ratelimit.DefaultFetchMessagesPerUser)
		rate(&r.AppendBytesPerUser, ratelimit.DefaultAppendBytesPerUser)
		num(&r.SubnetBitsV4, ratelimit.DefaultSubnetBitsV4)
		num(&r.SubnetBitsV6, ratelimit.DefaultSubnetBitsV6)
		num(&r.IPBitsV4, ratelimit.DefaultIPBitsV4)
		num(&r.IPBitsV6, ratelimit.DefaultIPBitsV6)
		if r.IPv4Translators == nil {
			for _, p := range ratelimit.DefaultIPv4Translators() {
				r.IPv4Translators = append(r.IPv4Translators, p.String())
			}
		}
		num(&r.MaxConnectionsPerIP, ratelimit.DefaultMaxConnectionsPerIP)
		num(&r.MaxUnauthenticatedPerIP, ratelimit.DefaultMaxUnauthenticatedPerIP)
		slots := proxy.DefaultMaxPreAuthConnections()
		if l.MaxPreAuthConnections != nil {
			slots = *l.MaxPreAuthConnections
		}
		num(&r.MaxUnauthPerSubnet, unauthPerSubnetDefault(slots))
		num(&r.MaxSessionsPerUser, ratelimit.DefaultMaxSessionsPerUser)
		num(&r.LoginFailuresPerIP, ratelimit.DefaultLoginFailuresPerIP)
		num(&r.LoginFailuresPerUser, ratelimit.DefaultLoginFailuresPerUser)
		num(&r.LoginFailuresPerUserIP, ratelimit.DefaultLoginFailuresPerUserIP)
		num(&r.MaxTrackedKeys, ratelimit.DefaultMaxTrackedKeys)
		dur(&r.LoginFailureWindow, ratelimit.DefaultLoginFailureWindow)
		dur(&r.LockoutBase, ratelimit.DefaultLockoutBase)
		dur(&r.LockoutMax, ratelimit.DefaultLockoutMax)
		dur(&r.LoginFailureDelay, ratelimit.DefaultLoginFailureDelay)
		dur(&r.CommandMaxDelay, ratelimit.DefaultCommandMaxDelay)
		dur(&r.FetchMaxDelay, ratelimit.DefaultFetchMaxDelay)
		str(&r.LockoutReason, ratelimit.DefaultLockoutReason)
		if r.FetchAction == "" {
			r.FetchAction = ratelimit.DefaultFetchAction
		}
		if r.Redis != nil {
			c := *r.Redis
			str(&c.Prefix, ratelimit.DefaultRedisPrefix)
			str(&c.FailureMode, string(ratelimit.DefaultRedisFailureMode))
			dur(&c.Timeout, ratelimit.DefaultRedisTimeout)
			r.Redis = &c
		}
		r.GroupLimits = maps.Clone(r.GroupLimits)
	}
	return &e
}

// effectiveConfigYAML is the redacted YAML of effectiveConfig(cfg).
func effectiveConfigYAML(cfg *fileConfig) ([]byte, error) {
	var n yaml.Node
	if err := n.Encode(effectiveConfig(cfg)); err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	redactConfig(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return nil, fmt.Errorf("config dump: %w", err)
	}
	enc.Close()
	return buf.Bytes(), nil
}

// redacted replaces every secret value.
const redacted = "REDACTED"

// redactConfig replaces the secrets in a configuration document, wherever
// they are: the value of any key naming a password, secret, token or
// credential (a file path to one, *_file, stays: it is not the secret),
// any PEM block, and the password of any URL. It is the one place that
// decides what a dump may show, and reads the YAML rather than the Go
// types so that keys added later are covered too.
func redactConfig(n *yaml.Node) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			redactConfig(c)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if secretKey(k.Value) && !hasMappings(v) {
				redactAll(v)
				continue
			}
			if strings.EqualFold(k.Value, "headers") && v.Kind == yaml.MappingNode {
				redactHeaders(v)
				continue
			}
			redactConfig(v)
		}
	case yaml.ScalarNode:
		n.Value = redactValue(n.Value)
	}
}

// redactHeaders redacts the values of an HTTP header map (routes.lookup.headers)
// but those of headers that never carry a credential: a service's own
// scheme may use any name (X-Auth, X-Api-Key, Authentication).
func redactHeaders(n *yaml.Node) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch strings.ToLower(n.Content[i].Value) {
		case "accept", "accept-encoding", "accept-language", "content-type", "user-agent":
			n.Content[i+1].Value = redactValue(n.Content[i+1].Value)
		default:
			redactAll(n.Content[i+1])
		}
	}
}

// hasMappings: a secret-named key holding structures ("tokens: [{name,
// file}]") is redacted by the keys inside them.
func hasMappings(n *yaml.Node) bool {
	if n.Kind == yaml.MappingNode {
		return true
	}
	for _, c := range n.Content {
		if hasMappings(c) {
			return true
		}
	}
	return false
}

// redactAll replaces every non-empty scalar under n.
func redactAll(n *yaml.Node) {
	if n.Kind == yaml.ScalarNode {
		if n.Value != "" && n.Tag != "!!null" {
			n.Value, n.Tag, n.Style = redacted, "!!str", 0
		}
		return
	}
	for _, c := range n.Content {
		redactAll(c)
	}
}

// secretKey reports whether a key's value is a secret: one of its words
// is password (pass, pwd), secret, token, credential(s), apikey,
// authorization or cookie, or it
// ends in _key (api_key, hmac_key), and it does not
// name a file, path or directory holding one.
func secretKey(k string) bool {
	words := strings.FieldsFunc(strings.ToLower(k), func(r rune) bool { return r == '_' || r == '-' || r == '.' })
	if len(words) == 0 {
		return false
	}
	switch words[len(words)-1] {
	case "file", "files", "path", "dir", "name", "names", "type", "id":
		return false
	case "key": // api_key, hmac_key; a lone "key" is a TLS key's path
		return len(words) > 1
	}
	for _, w := range words {
		switch w {
		case "password", "passwd", "pass", "pwd", "passphrase", "secret", "secrets", "token", "tokens", "credential", "credentials", "apikey",
			"authorization", "cookie": // HTTP headers a lookup service may be given (routes.lookup.headers)
			return true
		}
	}
	return false
}

// redactValue hides a PEM block, a URL's password and the values of a
// URL's query parameters that secretKey names (?access_token=, ?api_key=)
// in any value.
func redactValue(v string) string {
	if strings.Contains(v, "-----BEGIN") {
		return redacted
	}
	i := strings.Index(v, "://")
	if i <= 0 || !strings.ContainsAny(v[i:], "@?") {
		return v
	}
	u, err := url.Parse(v)
	if err != nil {
		// Where its password or query ends is unknown: all of it.
		return redacted
	}
	changed := false
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), redacted)
			changed = true
		}
	}
	if u.RawQuery != "" {
		params := strings.Split(u.RawQuery, "&")
		for j, kv := range params {
			k, _, ok := strings.Cut(kv, "=")
			if name, err := url.QueryUnescape(k); ok && err == nil && secretKey(name) {
				params[j] = k + "=" + redacted
				changed = true
			}
		}
		u.RawQuery = strings.Join(params, "&")
	}
	if !changed {
		return v
	}
	return u.String()
}

// config dump

const configUsage = `Usage: imapwarden config dump -c FILE

Print the effective configuration: the file with every default filled in,
secrets redacted (values of keys naming a password, secret, token,
credential, authorization or cookie, PEM blocks, passwords in URLs and
their query parameters of such names, HTTP header values but Accept,
Content-Type and User-Agent, a URL that does not parse). The admin listener serves the
running one at GET /config. The file is parsed but not checked: run
"imapwarden validate" for that.
`

type configFlags struct{ config string }

func newConfigFlags(f *configFlags) *flag.FlagSet {
	if f == nil {
		f = new(configFlags)
	}
	fs := newFlagSet("config")
	fs.StringVar(&f.config, "c", "", "the configuration `FILE` (required)")
	return fs
}

func cmdConfig(_ context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "dump" {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			printFlagUsage(stdout, configUsage, newConfigFlags(nil))
			return exitOK
		}
		fmt.Fprint(stderr, "imapwarden config: want \"config dump -c FILE\"\nRun \"imapwarden help config\" for usage.\n")
		return exitUsage
	}
	var f configFlags
	fs := newConfigFlags(&f)
	if code, ok := parseFlags(fs, args[1:], configUsage, stdout, stderr); !ok {
		return code
	}
	if f.config == "" {
		fmt.Fprint(stderr, "imapwarden config dump: -c FILE is required\nRun \"imapwarden help config\" for usage.\n")
		return exitUsage
	}
	cfg, err := loadConfigFile(f.config)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	out, err := effectiveConfigYAML(cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitError
	}
	stdout.Write(out)
	return exitOK
}
