# Policy 5, protected folders: the mailboxes in data.protected_folders.mailboxes
# (INBOX, Sent, Drafts by default) cannot be deleted or renamed, whatever the
# case and the encoding the client spells them in (the proxy hands policies
# the canonical name: modified UTF-7 decoded, INBOX folded). Decided on the
# delete-mailbox and rename-mailbox effects (RENAME INBOX empties it; a
# SETMETADATA of a vendor entry the server expunges by has delete-mailbox
# too), on a protected mailbox or on a parent of one: RENAME moves the
# inferiors with it (RFC 9051 §6.3.6), as legal_hold's holds_inside knows.
package imapwarden

inspect_effects contains "delete-mailbox"

inspect_effects contains "rename-mailbox"

protected_mailbox(name) if {
	some m in data.protected_folders.mailboxes
	lower(m) == lower(name)
}

# protected_inside(name) is the protected mailboxes inside name, under the
# backend's delimiter (mailbox_under).
protected_inside(name) := {m |
	some m in data.protected_folders.mailboxes
	lower(m) != lower(name)
	mailbox_under(m, name)
}

protected_verbs := {"delete-mailbox": "deleted", "rename-mailbox": "renamed"}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s is protected and cannot be %s", [e.mailbox, protected_verbs[e.kind]]),
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	protected_mailbox(e.mailbox)
}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s holds the protected %s and cannot be %s", [e.mailbox, m, protected_verbs[e.kind]]),
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	some m in protected_inside(e.mailbox)
}

# Another user's mailbox reached through the other users' namespace is
# protected under the owner's own name (Cyrus "user.bob.Sent" is bob's
# "INBOX.Sent", "user.bob" bob's INBOX; input.command.effects[_].owner_mailbox).
deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s is protected and cannot be %s", [e.mailbox, protected_verbs[e.kind]]),
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	protected_mailbox(e.owner_mailbox)
}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s holds the protected %s and cannot be %s", [e.mailbox, m, protected_verbs[e.kind]]),
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	some m in protected_inside(e.owner_mailbox)
}

# A mailbox in a shared namespace (namespace "shared": Courier's
# "#shared.bob.Sent", a folder bob shares by ACL) has no owner the proxy
# can read, nor the owner's own name for it: it may be anyone's protected
# folder. DELETE and RENAME are refused there, except in the shared
# mailboxes data.protected_folders.shared_unprotected names (with those
# inside them), which the operator knows are no user's protected folder.
shared_unprotected(name) if {
	some m in object.get(data.protected_folders, "shared_unprotected", [])
	mailbox_under(name, m)
}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s is a shared mailbox of unknown owner and cannot be %s", [e.mailbox, protected_verbs[e.kind]]),
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	e.namespace == "shared"
	count(data.protected_folders.mailboxes) > 0
	not shared_unprotected(e.mailbox)
}
