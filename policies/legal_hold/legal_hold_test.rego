package legal_hold_test

import data.imapwarden

hold := {"users": ["erin"], "mailboxes": {"*": ["Legal"], "Alice": ["Projects/Acme"], "Bob.Smith": ["Archive"]}}

# held_cmd is a command as the proxy presents it: its effects, each on a
# mailbox (the selected one resolved), from proxy/imapwire's table.
held_cmd(user, command) := {"point": "command", "command": command, "session": {
	"user": user, "groups": [], "tls": {"version": "TLS1.3"}, "delimiter": "/",
}}

on(kind, target, mailbox) := {"kind": kind, "target": target, "mailbox": mailbox}

expunge_in(mailbox) := {"name": "EXPUNGE", "effects": [on("expunge", "selected", mailbox)]}

test_held_user_expunge_refused if {
	d := imapwarden.decision with input as held_cmd("erin", expunge_in("INBOX"))
		with data.legal_hold as hold
	d.allow == false
	d.annotations.policy == "legal_hold"
}

# Whatever command carries it: UID EXPUNGE, CLOSE of a mailbox not opened by
# EXAMINE (attack B of issue 11), MOVE out.
test_every_expunge_refused if {
	every c in [
		{"name": "EXPUNGE", "uid": true, "effects": [on("expunge", "selected", "Legal")]},
		{"name": "CLOSE", "effects": [{"kind": "select", "target": "session"}, on("expunge", "selected", "Legal")]},
		{"name": "MOVE", "effects": [on("create-messages", "destination", "Trash"), on("expunge", "selected", "Legal")]},
	] {
		d := imapwarden.decision with input as held_cmd("bob", c) with data.legal_hold as hold
		d.reason == "Mailbox is under legal hold: expunge refused"
	}
}

# CLOSE after EXAMINE has no expunge effect.
test_close_examined_allowed if {
	imapwarden.decision.allow with input as held_cmd("bob", {"name": "CLOSE", "effects": [{"kind": "select", "target": "session"}]})
		with data.legal_hold as hold
}

test_store_deleted_refused if {
	d := imapwarden.decision with input as held_cmd("erin", {"name": "STORE", "effects": [on("set-flags", "selected", "INBOX"), on("mark-deleted", "selected", "INBOX")]})
		with data.legal_hold as hold
	d.reason == "Mailbox is under legal hold: cannot mark messages deleted"
}

test_append_deleted_refused if {
	d := imapwarden.decision with input as held_cmd("erin", {"name": "APPEND", "effects": [on("create-messages", "mailbox", "INBOX"), on("mark-deleted", "mailbox", "INBOX")]})
		with data.legal_hold as hold
	d.reason == "Mailbox is under legal hold: cannot mark messages deleted"
}

test_store_other_flags_allowed if {
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "STORE", "effects": [on("set-flags", "selected", "INBOX")]})
		with data.legal_hold as hold
}

test_held_mailbox_for_everyone if {
	not imapwarden.decision.allow with input as held_cmd("bob", expunge_in("Legal/2024"))
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", expunge_in("Legalese"))
		with data.legal_hold as hold

	# Case as the client spelled it: names compare case-insensitively.
	not imapwarden.decision.allow with input as held_cmd("bob", expunge_in("LEGAL"))
		with data.legal_hold as hold
}

test_delimiter_from_backend if {
	# Under ".", "Legal/2024" is a sibling name, "Legal.2024" is inside.
	d := {"point": "command", "command": expunge_in("Legal.2024"), "session": {
		"user": "bob", "groups": [], "tls": {"version": "TLS1.3"}, "delimiter": ".",
	}}
	not imapwarden.decision.allow with input as d with data.legal_hold as hold
	imapwarden.decision.allow with input as object.union(d, {"command": expunge_in("Legal/2024")}) with data.legal_hold as hold
}

test_held_mailbox_per_user if {
	move := {"name": "MOVE", "effects": [on("create-messages", "destination", "Trash"), on("expunge", "selected", "Projects/Acme")]}
	not imapwarden.decision.allow with input as held_cmd("alice", move)
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", move)
		with data.legal_hold as hold
}

test_delete_and_rename_refused if {
	not imapwarden.decision.allow with input as held_cmd("bob", {"name": "DELETE", "effects": [on("delete-mailbox", "mailbox", "Legal")]})
		with data.legal_hold as hold

	# A parent of a held mailbox.
	not imapwarden.decision.allow with input as held_cmd("alice", {"name": "RENAME", "effects": [on("rename-mailbox", "mailbox", "Projects"), on("create-mailbox", "destination", "Old")]})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("alice", {"name": "RENAME", "effects": [on("rename-mailbox", "mailbox", "Projects/Other"), on("create-mailbox", "destination", "Old")]})
		with data.legal_hold as hold
}

test_unheld_user_may_expunge if {
	imapwarden.decision.allow with input as held_cmd("bob", expunge_in("INBOX"))
		with data.legal_hold as hold
}

test_copy_and_append_allowed if {
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "COPY", "effects": [on("create-messages", "destination", "Archive"), on("read-metadata", "selected", "INBOX")]})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "APPEND", "effects": [on("create-messages", "mailbox", "INBOX")]})
		with data.legal_hold as hold
}

test_inspects_every_destroying_effect if {
	{"expunge", "mark-deleted", "delete-mailbox", "rename-mailbox"} == imapwarden.inspect_effects & {"expunge", "mark-deleted", "delete-mailbox", "rename-mailbox"}
}

# SETMETADATA of Cyrus's expire annotation: cyr_expire expunges the mailbox
# and the inferiors that set none (attack40 finding 2); proxy/imapwire
# gives it expunge and delete-mailbox on the mailbox.
expire(mailbox) := {"name": "SETMETADATA", "effects": [on("metadata", "mailbox", mailbox), on("expunge", "mailbox", mailbox), on("delete-mailbox", "mailbox", mailbox)]}

test_expiring_annotation_refused if {
	not imapwarden.decision.allow with input as held_cmd("bob", expire("Legal"))
		with data.legal_hold as hold
	not imapwarden.decision.allow with input as held_cmd("alice", expire("Projects"))
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", expire("Projects"))
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", {"name": "SETMETADATA", "effects": [on("metadata", "mailbox", "Legal")]})
		with data.legal_hold as hold
}

# Another user's mailbox through the other users' namespace: held as its
# owner's hold says, under the owner's own name (Cyrus "user.alice.Projects.Acme"
# is alice's "INBOX.Projects.Acme"; attack40 finding 1).
other_on(kind, target, mailbox, owner, owner_mailbox) := {
	"kind": kind, "target": target, "mailbox": mailbox,
	"namespace": "other", "owner": owner, "owner_mailbox": owner_mailbox,
}

test_other_users_namespace_held if {
	every c in [
		{"name": "EXPUNGE", "effects": [other_on("expunge", "selected", "user.ALICE.Projects.Acme", "ALICE", "Projects/Acme")]},
		{"name": "DELETE", "effects": [other_on("delete-mailbox", "mailbox", "user.alice.Projects", "alice", "Projects")]},
		# The owner is the login, not the level as written: Cyrus's
		# "user.bob^smith" is bob.smith's.
		{"name": "EXPUNGE", "effects": [other_on("expunge", "selected", "user.bob^smith.Archive", "bob.smith", "Archive")]},
		{"name": "DELETE", "effects": [other_on("delete-mailbox", "mailbox", "user.bob.Legal", "bob", "Legal")]},
		{"name": "RENAME", "effects": [other_on("rename-mailbox", "mailbox", "user.erin.Anything", "erin", "Anything")]},
		{"name": "DELETE", "effects": [{"kind": "delete-mailbox", "target": "mailbox", "mailbox": "Other Users/bob", "namespace": "other", "owner": "bob"}]},
	] {
		d := imapwarden.decision with input as held_cmd("carol", c) with data.legal_hold as hold
		d.allow == false
		d.annotations.policy == "legal_hold"
	}
}

test_other_users_namespace_not_held_allowed if {
	every c in [
		{"name": "EXPUNGE", "effects": [other_on("expunge", "selected", "user.alice.Misc", "alice", "Misc")]},
		{"name": "DELETE", "effects": [other_on("delete-mailbox", "mailbox", "user.bob.Old", "bob", "Old")]},
		# Another login than the hold's, under the session user's
		# folding: alice@example.com is not Alice.
		{"name": "DELETE", "effects": [other_on("delete-mailbox", "mailbox", "user.alice@example^com.Projects", "alice@example.com", "Projects")]},
		{"name": "EXPUNGE", "effects": [other_on("expunge", "selected", "user.bob.Archive", "bob", "Archive")]},
	] {
		imapwarden.decision.allow with input as held_cmd("carol", c) with data.legal_hold as hold
	}
}

# A mailbox in a shared namespace has no owner the proxy reads (Courier's
# "#shared.bob.Legal" is bob's INBOX.Legal, shared by ACL): while a hold is
# in force its destructive effects are refused, whoever the session user.
shared_on(kind, target, mailbox) := {"kind": kind, "target": target, "mailbox": mailbox, "namespace": "shared"}

shared_destroying := [
	{"name": "EXPUNGE", "effects": [shared_on("expunge", "selected", "#shared.bob.Legal")]},
	{"name": "STORE", "effects": [shared_on("set-flags", "selected", "#shared.bob.Legal"), shared_on("mark-deleted", "selected", "#shared.bob.Legal")]},
	{"name": "DELETE", "effects": [shared_on("delete-mailbox", "mailbox", "#shared.bob.Misc")]},
	{"name": "RENAME", "effects": [shared_on("rename-mailbox", "mailbox", "#shared.bob"), shared_on("create-mailbox", "destination", "#shared.bob2")]},
	{"name": "MOVE", "effects": [on("create-messages", "destination", "Trash"), shared_on("expunge", "selected", "Public/Lists")]},
]

test_shared_namespace_owner_unknown_refused if {
	every c in shared_destroying {
		d := imapwarden.decision with input as held_cmd("carol", c) with data.legal_hold as hold
		d.allow == false
		d.annotations.policy == "legal_hold"
		startswith(d.reason, "Shared mailbox of unknown owner")
	}
}

test_shared_namespace_only_while_a_hold_is_in_force if {
	every c in shared_destroying {
		imapwarden.decision.allow with input as held_cmd("carol", c)
			with data.legal_hold as {"users": [], "mailboxes": {"*": []}}
			with data.protected_folders as unprotected
	}
	every h in [{"users": ["zed"], "mailboxes": {}}, {"users": [], "mailboxes": {"zed": ["X"]}}] {
		not imapwarden.decision.allow with input as held_cmd("carol", shared_destroying[0])
			with data.legal_hold as h
	}
}

# (protected_folders refuses DELETE and RENAME there too unless configured.)
unprotected := {"mailboxes": []}

test_shared_not_held_allowed if {
	public := object.union(hold, {"shared_not_held": ["Public", "#shared.bob.Misc"]})
	imapwarden.decision.allow with input as held_cmd("carol", shared_destroying[2]) with data.legal_hold as public
		with data.protected_folders as unprotected
	imapwarden.decision.allow with input as held_cmd("carol", shared_destroying[4]) with data.legal_hold as public
	not imapwarden.decision.allow with input as held_cmd("carol", shared_destroying[0]) with data.legal_hold as public

	# Renaming "#shared.bob" would move what is outside Public with it.
	not imapwarden.decision.allow with input as held_cmd("carol", shared_destroying[3]) with data.legal_hold as public
}

# Honest use of shared folders stays: what destroys nothing.
test_shared_namespace_reads_and_copies_allowed if {
	every c in [
		{"name": "SELECT", "effects": [{"kind": "select", "target": "session"}, shared_on("read-metadata", "mailbox", "#shared.bob.Legal")]},
		{"name": "STORE", "effects": [shared_on("set-flags", "selected", "#shared.bob.Legal")]},
		{"name": "APPEND", "effects": [shared_on("create-messages", "mailbox", "#shared.bob.Legal")]},
		{"name": "COPY", "effects": [shared_on("create-messages", "destination", "#shared.bob.Legal"), on("read-metadata", "selected", "INBOX")]},
		{"name": "CREATE", "effects": [shared_on("create-mailbox", "mailbox", "#shared.bob.New")]},
	] {
		imapwarden.decision.allow with input as held_cmd("carol", c) with data.legal_hold as hold
	}
}
