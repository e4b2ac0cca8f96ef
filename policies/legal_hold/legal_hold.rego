# Policy 4, legal hold: nothing held may be destroyed or moved away. For the
# users in data.legal_hold.users every mailbox is held; data.legal_hold.mailboxes
# maps a user (or "*" for everyone) to held mailboxes, each with the
# mailboxes inside it. Refused on held mailboxes: EXPUNGE (UID EXPUNGE too),
# STORE that sets \Deleted (+FLAGS or FLAGS), DELETE, MOVE out, and RENAME
# of a held mailbox or of a parent of one (a renamed mailbox would escape
# a hold given by name). APPEND and COPY stay allowed: they destroy nothing.
package imapwarden

legal_hold_commands := {"EXPUNGE", "STORE", "DELETE", "MOVE", "RENAME"}

inspect contains name if some name in legal_hold_commands

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

hold_denial(reason) := {
	"policy": "legal_hold",
	"code": "NOPERM",
	"reason": reason,
}

deny contains hold_denial("Mailbox is under legal hold: expunge refused") if {
	input.point == "command"
	input.command.name == "EXPUNGE"
	held(input.command.selected.mailbox)
}

deny contains hold_denial("Mailbox is under legal hold: cannot mark messages deleted") if {
	input.point == "command"
	input.command.name == "STORE"
	input.command.store.op in {"+FLAGS", "FLAGS"}
	some flag in input.command.store.flags
	lower(flag) == "\\deleted"
	held(input.command.selected.mailbox)
}

deny contains hold_denial("Mailbox is under legal hold: move refused") if {
	input.point == "command"
	input.command.name == "MOVE"
	held(input.command.selected.mailbox)
}

deny contains hold_denial("Mailbox is under legal hold: delete refused") if {
	input.point == "command"
	input.command.name == "DELETE"
	holds_inside(input.command.mailbox)
}

deny contains hold_denial("Mailbox is under legal hold: rename refused") if {
	input.point == "command"
	input.command.name == "RENAME"
	holds_inside(input.command.mailbox)
}

# A mailbox name too long for the proxy to buffer is streamed, and the
# decision is made before it is seen (neither partial nor complete, and no
# mailbox): while anything is held, refuse rather than let a held mailbox
# pass unseen.
deny contains hold_denial("Mailbox name too long to check against the legal hold") if {
	input.point == "command"
	input.command.name in {"DELETE", "RENAME"}
	input.command.partial == false
	input.command.complete == false
	not input.command.mailbox
	holds_exist
}

holds_exist if held_user

holds_exist if count(held_patterns) > 0
