# Policy 3, read-only users: the users in data.readonly.users, and members of
# data.readonly.groups, may read but change nothing.
#
# SELECT is refused (with a hint to use EXAMINE), not turned into a read-only
# session: the relay forwards the client's bytes unchanged, and a mailbox
# opened read-write would still let FETCH BODY[] set \Seen and CLOSE expunge.
# EXAMINE opens it read-only at the server (RFC 9051 §6.3.3).
package imapwarden

readonly_refused := {
	"SELECT": "Read-only account: open mailboxes with EXAMINE",
	"APPEND": "Read-only account: cannot add messages",
	"STORE": "Read-only account: cannot change flags",
	"EXPUNGE": "Read-only account: cannot expunge",
	"COPY": "Read-only account: cannot copy messages",
	"MOVE": "Read-only account: cannot move messages",
	"CREATE": "Read-only account: cannot create mailboxes",
	"DELETE": "Read-only account: cannot delete mailboxes",
	"RENAME": "Read-only account: cannot rename mailboxes",
	"SETACL": "Read-only account: cannot change access rights",
	"DELETEACL": "Read-only account: cannot change access rights",
	"SETMETADATA": "Read-only account: cannot change metadata",
}

inspect contains name if some name, _ in readonly_refused

readonly_session if in_list(data.readonly.users)

readonly_session if {
	some g in input.session.groups
	g in data.readonly.groups
}

deny contains {
	"policy": "readonly",
	"code": "NOPERM",
	"reason": reason,
} if {
	input.point == "command"
	reason := readonly_refused[input.command.name]
	readonly_session
}
