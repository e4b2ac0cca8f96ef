# Policy 4, legal hold: nothing held may be destroyed or moved away. For the
# users in data.legal_hold.users every mailbox is held; data.legal_hold.mailboxes
# maps a user (or "*" for everyone) to held mailboxes, each with the
# mailboxes inside it.
#
# Decided on effects (input.command.effects), whichever command has them:
# expunge (EXPUNGE, UID EXPUNGE, CLOSE of a mailbox not opened by EXAMINE,
# even after a SELECT answered [READ-ONLY]: UNSELECT leaves it; MOVE out),
# mark-deleted (STORE setting \Deleted, APPEND of a message with
# \Deleted), and delete-mailbox or
# rename-mailbox of a held mailbox or of a parent of one (a renamed mailbox
# would escape a hold given by name; RENAME INBOX empties INBOX); a
# SETMETADATA of a vendor entry the server expunges by later (Cyrus's
# expire, inherited by the inferiors) has expunge and delete-mailbox on its
# mailbox, refused on a held mailbox and on a parent of one. Copies in
# (APPEND without \Deleted, COPY, MOVE into) stay allowed: they destroy
# nothing. A COPY or MOVE keeps the source's flags, \Deleted included,
# which the bytes do not show; expunge stays refused, so nothing held goes.
# A mailbox of a shared namespace has no owner the proxy reads: while any
# hold is in force, its destructive effects are refused (see below).
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

# Another user's mailbox reached through the other users' namespace
# (input.command.effects[_].owner, owner_mailbox: Cyrus "user.bob.Legal" is
# bob's "INBOX.Legal") is held as its owner's hold says, under the owner's
# own name. The owner is the login the backend maps the mailbox to (Cyrus
# "user.bob^smith" is bob.smith's; the proxy refuses a name with no one
# login reading), so it matches the hold's logins as input.session.user
# does: lower-cased.
same_login(a, b) if lower(a) == lower(b)

held_patterns_of(owner) := {m | some m in object.get(data.legal_hold.mailboxes, "*", [])} | {m |
	some u, list in data.legal_hold.mailboxes
	same_login(u, owner)
	some m in list
}

held_user_of(owner) if {
	some u in data.legal_hold.users
	same_login(u, owner)
}

owner_held(e) if held_user_of(e.owner)

owner_held(e) if {
	some m in held_patterns_of(e.owner)
	mailbox_under(e.owner_mailbox, m)
}

owner_holds_inside(e) if owner_held(e)

owner_holds_inside(e) if {
	some m in held_patterns_of(e.owner)
	mailbox_under(m, e.owner_mailbox)
}

# The owner level itself (Dovecot "Other Users/bob", no owner_mailbox)
# holds everything of the owner.
owner_holds_inside(e) if {
	e.owner
	not e.owner_mailbox
	count(held_patterns_of(e.owner)) > 0
}

# A mailbox in a shared namespace (input.command.effects[_].namespace
# "shared": Courier's "#shared.bob.Legal", a folder bob shares by ACL, or a
# Dovecot public namespace) has no owner the proxy can read: the level
# after the prefix may be a login, a login with "." written as a space, or
# an account group (Courier's shared index). Its owner and the owner's name
# for it being unknown, it may be any held user's held mailbox: while any
# hold is in force, its destructive effects are refused, except in the
# shared mailboxes data.legal_hold.shared_not_held names (and those inside
# them), which the operator knows hold nobody's held mail (public folders).
hold_in_force if count(data.legal_hold.users) > 0

hold_in_force if {
	some _, list in data.legal_hold.mailboxes
	count(list) > 0
}

shared_not_held(name) if {
	some m in object.get(data.legal_hold, "shared_not_held", [])
	mailbox_under(name, m)
}

owner_unknown_reasons := {
	"expunge": "Shared mailbox of unknown owner, legal hold in force: expunge refused",
	"mark-deleted": "Shared mailbox of unknown owner, legal hold in force: cannot mark messages deleted",
	"delete-mailbox": "Shared mailbox of unknown owner, legal hold in force: delete refused",
	"rename-mailbox": "Shared mailbox of unknown owner, legal hold in force: rename refused",
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

deny contains {
	"policy": "legal_hold",
	"code": "NOPERM",
	"reason": legal_hold_reasons[e.kind],
} if {
	input.point == "command"
	some e in effects_of({"expunge", "mark-deleted"})
	e.owner
	owner_held(e)
}

deny contains {
	"policy": "legal_hold",
	"code": "NOPERM",
	"reason": legal_hold_reasons[e.kind],
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	e.owner
	owner_holds_inside(e)
}

deny contains {
	"policy": "legal_hold",
	"code": "NOPERM",
	"reason": owner_unknown_reasons[e.kind],
} if {
	input.point == "command"
	some e in effects_of({"expunge", "mark-deleted", "delete-mailbox", "rename-mailbox"})
	e.namespace == "shared"
	hold_in_force
	not shared_not_held(e.mailbox)
}
