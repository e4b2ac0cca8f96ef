# Policy 4, legal hold: nothing held may be destroyed or moved away. For the
# users in data.legal_hold.users every mailbox is held; data.legal_hold.mailboxes
# maps a user (or "*" for everyone) to held mailboxes, each with the
# mailboxes inside it.
#
# Decided on effects (input.command.effects), whichever command has them:
# expunge (EXPUNGE, UID EXPUNGE, CLOSE of a mailbox opened read-write, MOVE
# out), mark-deleted (STORE setting \Deleted), and delete-mailbox or
# rename-mailbox of a held mailbox or of a parent of one (a renamed mailbox
# would escape a hold given by name; RENAME INBOX empties INBOX); a
# SETMETADATA of a vendor entry the server expunges by later (Cyrus's
# expire, inherited by the inferiors) has expunge and delete-mailbox on its
# mailbox, refused on a held mailbox and on a parent of one. Copies in
# (APPEND, COPY, MOVE into) stay allowed: they destroy nothing.
package imapwarden

inspect_effects contains "expunge"

inspect_effects contains "mark-deleted"

inspect_effects contains "delete-mailbox"

inspect_effects contains "rename-mailbox"

held_user if in_list(data.legal_hold.users)

held_patterns contains m if some m in object.get(data.legal_hold.mailboxes, "*", [])

held_patterns contains m if {
	some u, list in data.legal_hold.mailboxes
	lower(u) == user
	some m in list
}

# held(name): name is under a hold.
held(_) if held_user

held(name) if {
	some m in held_patterns
	mailbox_under(name, m)
}

# holds_inside(name): renaming or deleting name would touch a held mailbox.
holds_inside(name) if held(name)

holds_inside(name) if {
	some m in held_patterns
	mailbox_under(m, name)
}

legal_hold_reasons := {
	"expunge": "Mailbox is under legal hold: expunge refused",
	"mark-deleted": "Mailbox is under legal hold: cannot mark messages deleted",
	"delete-mailbox": "Mailbox is under legal hold: delete refused",
	"rename-mailbox": "Mailbox is under legal hold: rename refused",
}

deny contains {
	"policy": "legal_hold",
	"code": "NOPERM",
	"reason": legal_hold_reasons[e.kind],
} if {
	input.point == "command"
	some e in effects_of({"expunge", "mark-deleted"})
	held(e.mailbox)
}

deny contains {
	"policy": "legal_hold",
	"code": "NOPERM",
	"reason": legal_hold_reasons[e.kind],
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	holds_inside(e.mailbox)
}
