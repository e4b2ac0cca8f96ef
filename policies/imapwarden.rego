# imapwarden's decision framework. imapwarden queries data.imapwarden.decision
# at each decision point (input.point: connect, auth, route, command). The
# policies in the subdirectories only add to three documents:
#
#   deny             denials: {"policy", "reason", "code", "disconnect", "annotations"}
#   inspect          the command names they need to see (others are never evaluated)
#   inspect_effects  the effects they need to see: every command that may
#                    have one is evaluated (proxy/imapwire's table)
#   route_backend  the backend for the session's user, at the route point
#   data_errors    what is wrong with their data (evaluated at load: any
#                  refuses the load, keeping the policy in force)
#
# so that each policy can be added or removed as a directory and trialled
# alone in shadow mode. README.md documents the contract.
package imapwarden

# decision is the first denial, disconnecting ones before the others (the
# set's order is deterministic); otherwise allow, naming the backend a
# policy chose at the route point. deny is evaluated once: the full
# reference is cached for the rest of the evaluation.
decision := denied(first_denial) if {
	count(data.imapwarden.deny) > 0
} else := {"allow": true, "backend": b} if {
	input.point == "route"
	b := data.imapwarden.route_backend
} else := {"allow": true}

# deny and route_backend are spelled in full: a directory may hold no
# policy that defines them.
first_denial := array.concat(
	[d | some d in data.imapwarden.deny; object.get(d, "disconnect", false) == true],
	[d | some d in data.imapwarden.deny; object.get(d, "disconnect", false) != true],
)[0]

denied(d) := {
	"allow": false,
	"reason": object.get(d, "reason", "Denied by policy"),
	"code": object.get(d, "code", "NOPERM"),
	"disconnect": object.get(d, "disconnect", false),
	"annotations": object.union(object.get(d, "annotations", {}), {"policy": object.get(d, "policy", "")}),
}

# user is the login name, lower-cased so that data lists match it however
# the client spelled it.
user := lower(input.session.user)

# in_list(names) holds when the user is one of names (case-insensitive).
in_list(names) if {
	some n in names
	lower(n) == user
}

# mailbox_under(name, prefix) holds when name is prefix or inside it, under
# the backend's hierarchy delimiter (input.session.delimiter, learned at
# login); without one, either of the common ones ("/" Dovecot and most
# others, "." Courier and Cyrus). Names are canonical: decoded from
# modified UTF-7, INBOX in upper case (policies/README.md).
mailbox_under(name, prefix) if lower(name) == lower(prefix)

mailbox_under(name, prefix) if {
	some delim in delimiters
	startswith(lower(name), concat("", [lower(prefix), delim]))
}

delimiters := [input.session.delimiter] if input.session.delimiter

else := ["/", "."]

# effects_of(kinds) is the set of the effects of the command whose kind is in kinds
# (input.command.effects: what the command does and on which mailbox, from
# the proxy's one table of commands). Policies decide on effects, not on
# command names: CLOSE is an expunge, MOVE an expunge and a copy.
effects_of(kinds) := {e | some e in input.command.effects; e.kind in kinds}

# commands is every command the relay forwards after login, for policies
# that must see them all.
commands := {
	"APPEND", "CAPABILITY", "CHECK", "CLOSE", "COPY", "CREATE", "DELETE", "DELETEACL",
	"ENABLE", "ESEARCH", "EXAMINE", "EXPUNGE", "FETCH", "GETACL", "GETMETADATA",
	"GETQUOTA", "GETQUOTAROOT", "ID", "IDLE", "LIST", "LISTRIGHTS", "LOGOUT", "LSUB",
	"MOVE", "MYRIGHTS", "NAMESPACE", "NOOP", "NOTIFY", "RENAME", "SEARCH", "SELECT",
	"SETACL", "SETMETADATA", "SETQUOTA", "SORT", "STATUS", "STORE", "SUBSCRIBE",
	"THREAD", "UNSELECT", "UNSUBSCRIBE",
}
