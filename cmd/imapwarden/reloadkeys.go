package main

// What a reload does with each configuration key (ARCHITECTURE.md §18):
// every key is either applied by a reload or one whose change refuses the
// reload as a whole, so that what a reload reports is what runs.

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// reloadClass says what a SIGHUP does with a changed key.
type reloadClass int

const (
	// reloadApplied: the reload applies the new value (to new sessions,
	// new admin requests, the next drain).
	reloadApplied reloadClass = iota + 1
	// restartOnly: bound at start; a reload changing it is refused and
	// the running configuration stays in force.
	restartOnly
)

// reloadKeys classifies every leaf key of fileConfig, written as in the
// file; "[]" stands for any list index and "*" for any map key.
// TestReloadKeysClassified walks fileConfig by reflection: a key added
// without an entry here fails it.
var reloadKeys = map[string]reloadClass{
	"hostname":        restartOnly, // proxy.Options.Hostname
	"log.level":       reloadApplied,
	"log.format":      restartOnly, // the logger is built once
	"log.sessions":    restartOnly, // wraps the proxy's Auditor
	"drain_timeout":   reloadApplied,
	"drain_cut_grace": restartOnly, // proxy.Options.CutGrace
	"lame_duck":       reloadApplied,

	// Listeners are bound at start.
	"listeners[].name":                restartOnly,
	"listeners[].address":             restartOnly,
	"listeners[].mode":                restartOnly,
	"listeners[].plaintext_auth_from": restartOnly,
	"listeners[].proxy_protocol_from": restartOnly,
	"listeners[].client_auth":         restartOnly,
	"listeners[].client_ca_file":      restartOnly,
	"listeners[].cert_login":          restartOnly,

	// The tlsterm.Server is built once; SIGHUP re-reads its files.
	"tls.certificates[].cert":        restartOnly,
	"tls.certificates[].key":         restartOnly,
	"tls.min_version":                restartOnly,
	"tls.strict_sni":                 restartOnly,
	"tls.reload_interval":            restartOnly,
	"tls.ticket_key_rotation":        restartOnly,
	"tls.expiry_warning":             restartOnly,
	"tls.acme.names":                 restartOnly,
	"tls.acme.ca":                    restartOnly,
	"tls.acme.email":                 restartOnly,
	"tls.acme.trusted_roots":         restartOnly,
	"tls.acme.storage":               restartOnly,
	"tls.acme.http_port":             restartOnly,
	"tls.acme.tls_alpn_port":         restartOnly,
	"tls.acme.listen_host":           restartOnly,
	"tls.acme.disable_http01":        restartOnly,
	"tls.acme.disable_tls_alpn01":    restartOnly,
	"tls.acme.key_type":              restartOnly,
	"tls.acme.on_demand.allow":       restartOnly,
	"tls.acme.on_demand.rate_limit":  restartOnly,
	"tls.acme.on_demand.rate_window": restartOnly,

	// Backends and routes: new pools and router (Monitor.Apply, srv.Update).
	"backends.*.address":                reloadApplied,
	"backends.*.servers[].name":         reloadApplied,
	"backends.*.servers[].address":      reloadApplied,
	"backends.*.servers[].weight":       reloadApplied,
	"backends.*.max_load":               reloadApplied,
	"backends.*.health.enabled":         reloadApplied,
	"backends.*.health.interval":        reloadApplied,
	"backends.*.health.fast_interval":   reloadApplied,
	"backends.*.health.timeout":         reloadApplied,
	"backends.*.health.rise":            reloadApplied,
	"backends.*.health.fall":            reloadApplied,
	"backends.*.health.starttls":        reloadApplied,
	"backends.*.health.capability":      reloadApplied,
	"backends.*.security":               reloadApplied,
	"backends.*.tls.ca_file":            reloadApplied,
	"backends.*.tls.server_name":        reloadApplied,
	"backends.*.tls.insecure":           reloadApplied,
	"backends.*.tls.min_version":        reloadApplied,
	"backends.*.tls.client_cert.cert":   reloadApplied,
	"backends.*.tls.client_cert.key":    reloadApplied,
	"backends.*.login":                  reloadApplied,
	"backends.*.master_user":            reloadApplied,
	"backends.*.master_password_file":   reloadApplied,
	"backends.*.master_separator":       reloadApplied,
	"backends.*.namespaces[].prefix":    reloadApplied,
	"backends.*.namespaces[].delimiter": reloadApplied,
	"backends.*.namespaces[].kind":      reloadApplied,
	"backends.*.connect_timeout":        reloadApplied,
	"backends.*.login_timeout":          reloadApplied,
	"backends.*.send_id":                reloadApplied,
	"backends.*.send_proxy":             reloadApplied,
	"routes.default":                    reloadApplied,
	"routes.users":                      reloadApplied,
	"routes.domains":                    reloadApplied,
	"routes.lookup.url":                 reloadApplied,
	"routes.lookup.timeout":             reloadApplied,
	"routes.lookup.cache_ttl":           reloadApplied,
	"routes.lookup.cache_size":          reloadApplied,
	"routes.lookup.max_wait":            reloadApplied,
	"routes.lookup.send_password":       reloadApplied,
	"routes.lookup.ca_file":             reloadApplied,
	"routes.lookup.headers":             reloadApplied,

	// proxy.Dynamic.Limits: new sessions.
	"limits.max_line":                  reloadApplied,
	"limits.max_buffered_literal":      reloadApplied,
	"limits.max_append_literal":        reloadApplied,
	"limits.max_command_bytes":         reloadApplied,
	"limits.max_preauth_command_bytes": reloadApplied,
	"limits.max_preauth_commands":      reloadApplied,
	"limits.preauth_idle":              reloadApplied,
	"limits.auth_idle":                 reloadApplied,
	"limits.idle_timeout":              reloadApplied,
	"limits.write_timeout":             reloadApplied,
	"limits.max_auth_failures":         reloadApplied,
	"limits.max_credential_bytes":      reloadApplied,
	"limits.max_compress_sessions":     reloadApplied,
	"limits.max_preauth_connections":   reloadApplied,
	"limits.max_inflight":              reloadApplied,
	"limits.max_inflight_bytes":        reloadApplied,
	"limits.backend_timeout":           reloadApplied,
	"limits.max_response_line":         reloadApplied,
	"limits.park_after":                reloadApplied,
	"limits.max_audit_uids":            reloadApplied,
	"limits.max_audit_shared_with":     reloadApplied,
	// At most the running trail's (ARCHITECTURE.md §11).
	"limits.max_audit_mailbox_names": reloadApplied,
	"limits.max_audit_name_bytes":    reloadApplied,
	"limits.max_tag":                 reloadApplied,
	"limits.max_list_depth":          reloadApplied,
	"limits.max_arguments":           reloadApplied,
	"limits.max_search_depth":        reloadApplied,

	"auth.allow_authzid":                                  reloadApplied,
	"auth.user_separators":                                reloadApplied,
	"auth.show_backend_id":                                restartOnly, // proxy.Options.ShowBackendID
	"auth.authenticators[].name":                          reloadApplied,
	"auth.authenticators[].type":                          reloadApplied,
	"auth.authenticators[].file.path":                     reloadApplied,
	"auth.authenticators[].file.max_concurrent":           reloadApplied,
	"auth.authenticators[].ldap.url":                      reloadApplied,
	"auth.authenticators[].ldap.start_tls":                reloadApplied,
	"auth.authenticators[].ldap.ca_file":                  reloadApplied,
	"auth.authenticators[].ldap.server_name":              reloadApplied,
	"auth.authenticators[].ldap.bind_dn":                  reloadApplied,
	"auth.authenticators[].ldap.search_base":              reloadApplied,
	"auth.authenticators[].ldap.search_filter":            reloadApplied,
	"auth.authenticators[].ldap.service_dn":               reloadApplied,
	"auth.authenticators[].ldap.service_password_file":    reloadApplied,
	"auth.authenticators[].ldap.user_attribute":           reloadApplied,
	"auth.authenticators[].ldap.group_attribute":          reloadApplied,
	"auth.authenticators[].ldap.group_attribute_base":     reloadApplied,
	"auth.authenticators[].ldap.group_base":               reloadApplied,
	"auth.authenticators[].ldap.group_filter":             reloadApplied,
	"auth.authenticators[].ldap.group_name_attribute":     reloadApplied,
	"auth.authenticators[].ldap.route_attribute":          reloadApplied,
	"auth.authenticators[].ldap.attributes":               reloadApplied,
	"auth.authenticators[].ldap.pool_size":                reloadApplied,
	"auth.authenticators[].ldap.timeout":                  reloadApplied,
	"auth.authenticators[].oauth2.issuer":                 reloadApplied,
	"auth.authenticators[].oauth2.audience":               reloadApplied,
	"auth.authenticators[].oauth2.jwks_url":               reloadApplied,
	"auth.authenticators[].oauth2.introspection":          reloadApplied,
	"auth.authenticators[].oauth2.introspection_url":      reloadApplied,
	"auth.authenticators[].oauth2.client_id":              reloadApplied,
	"auth.authenticators[].oauth2.client_secret_file":     reloadApplied,
	"auth.authenticators[].oauth2.user_claim":             reloadApplied,
	"auth.authenticators[].oauth2.allow_unverified_email": reloadApplied,
	"auth.authenticators[].oauth2.groups_claim":           reloadApplied,
	"auth.authenticators[].oauth2.scope":                  reloadApplied,
	"auth.authenticators[].oauth2.algorithms":             reloadApplied,
	"auth.authenticators[].oauth2.leeway":                 reloadApplied,
	"auth.authenticators[].oauth2.jwks_cache_ttl":         reloadApplied,
	"auth.authenticators[].oauth2.jwks_min_refresh":       reloadApplied,
	"auth.authenticators[].oauth2.timeout":                reloadApplied,
	"auth.authenticators[].oauth2.max_token_size":         reloadApplied,
	"auth.authenticators[].oauth2.ca_file":                reloadApplied,

	// The admin listener is served again, on the address bound for it
	// (adminServer.apply); the console's and the searches' bounds and the
	// recent events' list are made once.
	"admin.address":                reloadApplied,
	"admin.token_file":             reloadApplied,
	"admin.tokens[].name":          reloadApplied,
	"admin.tokens[].scope":         reloadApplied,
	"admin.tokens[].file":          reloadApplied,
	"admin.tls.cert":               reloadApplied,
	"admin.tls.key":                reloadApplied,
	"admin.pprof":                  reloadApplied,
	"admin.read_header_timeout":    reloadApplied,
	"admin.read_timeout":           reloadApplied,
	"admin.write_timeout":          reloadApplied,
	"admin.idle_timeout":           reloadApplied,
	"admin.max_connections":        reloadApplied,
	"admin.max_connections_per_ip": reloadApplied,
	"admin.max_body_bytes":         reloadApplied,
	"admin.max_header_bytes":       reloadApplied,
	"admin.token_failures_per_ip":  restartOnly,
	"admin.token_failure_window":   restartOnly,
	"admin.console_session_ttl":    restartOnly,
	"admin.console_max_sessions":   restartOnly,
	"admin.page_size":              restartOnly,
	"admin.token_failure_hosts":    restartOnly,
	"admin.audit_searches":         restartOnly,
	"admin.recent_events":          restartOnly,

	// A changed policy section gets a new engine; an unchanged one
	// re-reads its files (applyPolicy).
	"policy.dirs[].path":   reloadApplied,
	"policy.dirs[].shadow": reloadApplied,
	"policy.groups_file":   reloadApplied,
	"policy.time_zone":     reloadApplied,
	"policy.poll_interval": reloadApplied,
	"policy.cache_size":    reloadApplied,
	"policy.eval_timeout":  reloadApplied,
	"policy.route":         reloadApplied,

	// The trail is opened once: its file, chain and key stay.
	"audit.sink":                  restartOnly,
	"audit.path":                  restartOnly,
	"audit.max_size":              restartOnly,
	"audit.rotate_every":          restartOnly,
	"audit.fsync":                 restartOnly,
	"audit.fsync_interval":        restartOnly,
	"audit.queue_size":            restartOnly,
	"audit.on_full":               restartOnly,
	"audit.ack_timeout":           restartOnly,
	"audit.drop_readiness":        restartOnly,
	"audit.drop_readiness_window": restartOnly,
	"audit.checkpoint_file":       restartOnly,
	"audit.key_file":              restartOnly,
	"audit.create_key":            restartOnly,
	"audit.syslog.network":        restartOnly,
	"audit.syslog.address":        restartOnly,
	"audit.syslog.facility":       restartOnly,
	"audit.syslog.app_name":       restartOnly,
	"audit.max_field_bytes":       restartOnly,
	"audit.max_list_items":        restartOnly,
	"audit.max_record_bytes":      restartOnly,

	// The limiter takes new limits (Limiter.Update) and is made or
	// dropped when enabled changes; its store is bound at start.
	"rate_limits.enabled":                            reloadApplied,
	"rate_limits.connections_per_ip":                 reloadApplied,
	"rate_limits.connections_per_subnet":             reloadApplied,
	"rate_limits.subnet_bits_v4":                     reloadApplied,
	"rate_limits.subnet_bits_v6":                     reloadApplied,
	"rate_limits.ip_bits_v4":                         reloadApplied,
	"rate_limits.ip_bits_v6":                         reloadApplied,
	"rate_limits.ipv4_translators":                   reloadApplied,
	"rate_limits.concurrent_connections_per_ip":      reloadApplied,
	"rate_limits.unauthenticated_connections_per_ip": reloadApplied,
	"rate_limits.sessions_per_user":                  reloadApplied,
	"rate_limits.login_failures_per_ip":              reloadApplied,
	"rate_limits.login_failures_per_user":            reloadApplied,
	"rate_limits.login_failures_per_user_ip":         reloadApplied,
	"rate_limits.login_failure_window":               reloadApplied,
	"rate_limits.lockout_base":                       reloadApplied,
	"rate_limits.lockout_max":                        reloadApplied,
	"rate_limits.login_failure_delay":                reloadApplied,
	"rate_limits.user_lockout_all_ips":               reloadApplied,
	"rate_limits.lockout_reason":                     reloadApplied,
	"rate_limits.commands_per_session":               reloadApplied,
	"rate_limits.commands_per_user":                  reloadApplied,
	"rate_limits.command_max_delay":                  reloadApplied,
	"rate_limits.fetch_bytes_per_user":               reloadApplied,
	"rate_limits.fetch_messages_per_user":            reloadApplied,
	"rate_limits.fetch_action":                       reloadApplied,
	"rate_limits.fetch_max_delay":                    reloadApplied,
	"rate_limits.append_bytes_per_user":              reloadApplied,
	"rate_limits.max_tracked_keys":                   restartOnly, // sizes the store
	"rate_limits.group_limits":                       reloadApplied,
	"rate_limits.redis.address":                      restartOnly,
	"rate_limits.redis.addresses":                    restartOnly,
	"rate_limits.redis.sentinel_master":              restartOnly,
	"rate_limits.redis.sentinel_password_file":       restartOnly,
	"rate_limits.redis.cluster":                      restartOnly,
	"rate_limits.redis.username":                     restartOnly,
	"rate_limits.redis.password_file":                restartOnly,
	"rate_limits.redis.db":                           restartOnly,
	"rate_limits.redis.prefix":                       restartOnly,
	"rate_limits.redis.failure_mode":                 restartOnly,
	"rate_limits.redis.timeout":                      restartOnly,
	"rate_limits.redis.lockout_sync_interval":        restartOnly,
	"rate_limits.redis.login_place_ttl":              restartOnly,
	"rate_limits.redis.tls.ca_file":                  restartOnly,
	"rate_limits.redis.tls.server_name":              restartOnly,
	"rate_limits.redis.tls.insecure":                 restartOnly,
	"rate_limits.redis.tls.min_version":              restartOnly,
	"rate_limits.redis.tls.client_cert.cert":         restartOnly,
	"rate_limits.redis.tls.client_cert.key":          restartOnly,

	// Counted for each connection under the key it was counted by, so a
	// new cap or subnet size applies to new connections.
	"rate_limits.unauthenticated_connections_per_subnet": reloadApplied,
}

// isConfigSection tells a struct type whose fields are keys of the file
// (this package's sections) from a value type decoded whole
// (ratelimit.Rate, ratelimit.GroupLimits, ...).
func isConfigSection(t reflect.Type) bool {
	return t.Kind() == reflect.Struct && t.PkgPath() == reflect.TypeFor[fileConfig]().PkgPath()
}

// yamlKey is a field's key in the file; "" for a field the file cannot set.
func yamlKey(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "-" {
		return ""
	}
	return name
}

// configLeaves calls fn with the pattern of every leaf key of type t
// ("listeners[].address").
func configLeaves(t reflect.Type, prefix string, fn func(pattern string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case isConfigSection(t):
		for i := range t.NumField() {
			f := t.Field(i)
			if k := yamlKey(f); k != "" {
				configLeaves(f.Type, joinKey(prefix, k), fn)
			}
		}
	case t.Kind() == reflect.Slice && isConfigSection(deref(t.Elem())):
		configLeaves(t.Elem(), prefix+"[]", fn)
	case t.Kind() == reflect.Map && isConfigSection(deref(t.Elem())):
		configLeaves(t.Elem(), prefix+".*", fn)
	default:
		fn(prefix)
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

// restartChanges lists the restart-only keys whose value differs between
// the running configuration and a new one, as paths of the file
// ("listeners[1].address"). Values are compared as written: a key set to
// its default where it was unset counts as a change.
func restartChanges(old, new *fileConfig) []string {
	var out []string
	diffLeaves(reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), "", "", &out)
	return out
}

// diffLeaves compares a and b (of one type) at key path (pattern pat).
func diffLeaves(a, b reflect.Value, path, pat string, out *[]string) {
	t := deref(a.Type())
	switch {
	case isConfigSection(t):
		a, b = derefValue(a), derefValue(b)
		for i := range t.NumField() {
			f := t.Field(i)
			k := yamlKey(f)
			if k == "" {
				continue
			}
			var fa, fb reflect.Value
			if a.IsValid() {
				fa = a.Field(i)
			} else {
				fa = reflect.Zero(f.Type)
			}
			if b.IsValid() {
				fb = b.Field(i)
			} else {
				fb = reflect.Zero(f.Type)
			}
			diffLeaves(fa, fb, joinKey(path, k), joinKey(pat, k), out)
		}
	case t.Kind() == reflect.Slice && isConfigSection(deref(t.Elem())):
		a, b = derefValue(a), derefValue(b)
		if a.Len() != b.Len() {
			if anyRestartOnly(pat + "[]") {
				*out = append(*out, path)
			}
			return
		}
		for i := range a.Len() {
			diffLeaves(a.Index(i), b.Index(i), fmt.Sprintf("%s[%d]", path, i), pat+"[]", out)
		}
	case t.Kind() == reflect.Map && isConfigSection(deref(t.Elem())):
		a, b = derefValue(a), derefValue(b)
		keys := map[string]bool{}
		for _, m := range []reflect.Value{a, b} {
			if m.IsValid() {
				for _, k := range m.MapKeys() {
					keys[k.String()] = true
				}
			}
		}
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range keys {
				if !yield(k) {
					return
				}
			}
		}) {
			kv := reflect.ValueOf(k)
			ea, eb := mapIndex(a, kv, t.Elem()), mapIndex(b, kv, t.Elem())
			diffLeaves(ea, eb, path+"."+k, pat+".*", out)
		}
	default:
		if reloadKeys[pat] == restartOnly && !reflect.DeepEqual(a.Interface(), b.Interface()) {
			*out = append(*out, path)
		}
	}
}

func derefValue(v reflect.Value) reflect.Value {
	for v.IsValid() && v.Kind() == reflect.Pointer {
		if v.IsNil() {
			return reflect.Value{}
		}
		v = v.Elem()
	}
	return v
}

func mapIndex(m, k reflect.Value, elem reflect.Type) reflect.Value {
	if m.IsValid() {
		if v := m.MapIndex(k); v.IsValid() {
			return v
		}
	}
	return reflect.Zero(elem)
}

// anyRestartOnly tells whether a key under pat is restart-only.
func anyRestartOnly(pat string) bool {
	for k, c := range reloadKeys {
		if c == restartOnly && strings.HasPrefix(k, pat+".") {
			return true
		}
	}
	return false
}

// restartError is a reload refused because keys bound at start changed.
type restartError struct{ keys []string }

func (e *restartError) Error() string {
	return fmt.Sprintf("%s: changed, but applied only at start: restart required (the running configuration stays in force)", strings.Join(e.keys, ", "))
}
