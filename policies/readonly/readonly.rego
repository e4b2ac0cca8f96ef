# Policy 3, read-only users: the users in data.readonly.users, and members of
# data.readonly.groups, may read but change nothing. Decided on effects
# (input.command.effects), not command names: every effect but reading is
# refused, whichever command has it: APPEND, COPY, MOVE, STORE, EXPUNGE,
# CLOSE of a mailbox not opened by EXAMINE, FETCH of a body without .PEEK (sets
# \Seen), CREATE, DELETE, RENAME, SUBSCRIBE, SETACL, SETMETADATA, SETQUOTA.
#
# SELECT opens a mailbox read-write (select-read-write) and is refused, with a
# hint to use EXAMINE: the relay forwards the client's bytes unchanged and
# does not rewrite SELECT into EXAMINE. EXAMINE opens it read-only at the
# server (RFC 9051 §6.3.3), where nothing the client reads changes it.
package imapwarden

readonly_reads := {"read-metadata", "read-content", "select", "session"}

readonly_reasons := {
	"select-read-write": "Read-only account: open mailboxes with EXAMINE",
	"create-messages": "Read-only account: cannot add messages",
	"set-flags": "Read-only account: cannot change flags",
	"mark-deleted": "Read-only account: cannot change flags",
	"expunge": "Read-only account: cannot expunge",
	"create-mailbox": "Read-only account: cannot create mailboxes",
	"delete-mailbox": "Read-only account: cannot delete mailboxes",
	"rename-mailbox": "Read-only account: cannot rename mailboxes",
	"subscriptions": "Read-only account: cannot change subscriptions",
	"acl": "Read-only account: cannot change access rights",
	"metadata": "Read-only account: cannot change metadata",
	"quota": "Read-only account: cannot change quotas",
}

inspect_effects contains kind if some kind, _ in readonly_reasons

readonly_session if in_list(data.readonly.users)

readonly_session if {
	some g in input.session.groups
	g in data.readonly.groups
}

deny contains {
	"policy": "readonly",
	"code": "NOPERM",
	"reason": object.get(readonly_reasons, e.kind, "Read-only account: cannot change anything"),
} if {
	input.point == "command"
	readonly_session
	some e in input.command.effects
	not e.kind in readonly_reads
}
