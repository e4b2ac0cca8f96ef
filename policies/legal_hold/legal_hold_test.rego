package legal_hold_test

import data.imapwarden

hold := {"users": ["erin"], "mailboxes": {"*": ["Legal"], "Alice": ["Projects/Acme"]}}

held_cmd(user, command) := {"point": "command", "command": command, "session": {
	"user": user, "groups": [], "tls": {"version": "TLS1.3"},
}}

test_held_user_expunge_refused if {
	d := imapwarden.decision with input as held_cmd("erin", {"name": "EXPUNGE", "selected": {"mailbox": "INBOX", "read_only": false}})
		with data.legal_hold as hold
	d.allow == false
	d.annotations.policy == "legal_hold"
}

test_uid_expunge_refused if {
	not imapwarden.decision.allow with input as held_cmd("erin", {"name": "EXPUNGE", "uid": true, "set": {"text": "1:3", "count": 3}, "selected": {"mailbox": "INBOX", "read_only": false}})
		with data.legal_hold as hold
}

test_store_deleted_refused if {
	every op in ["+FLAGS", "FLAGS"] {
		not imapwarden.decision.allow with input as held_cmd("erin", {"name": "STORE", "store": {"op": op, "silent": false, "flags": ["\\Seen", "\\DELETED"]}, "selected": {"mailbox": "INBOX", "read_only": false}})
			with data.legal_hold as hold
	}
}

test_store_other_flags_allowed if {
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "STORE", "store": {"op": "+FLAGS", "silent": true, "flags": ["\\Seen"]}, "selected": {"mailbox": "INBOX", "read_only": false}})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "STORE", "store": {"op": "-FLAGS", "silent": false, "flags": ["\\Deleted"]}, "selected": {"mailbox": "INBOX", "read_only": false}})
		with data.legal_hold as hold
}

test_held_mailbox_for_everyone if {
	not imapwarden.decision.allow with input as held_cmd("bob", {"name": "EXPUNGE", "selected": {"mailbox": "Legal/2024", "read_only": false}})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", {"name": "EXPUNGE", "selected": {"mailbox": "Legalese", "read_only": false}})
		with data.legal_hold as hold
}

test_held_mailbox_per_user if {
	not imapwarden.decision.allow with input as held_cmd("alice", {"name": "MOVE", "set": {"text": "1", "count": 1}, "destination": "Trash", "selected": {"mailbox": "Projects/Acme", "read_only": false}})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", {"name": "MOVE", "set": {"text": "1", "count": 1}, "destination": "Trash", "selected": {"mailbox": "Projects/Acme", "read_only": false}})
		with data.legal_hold as hold
}

test_delete_and_rename_refused if {
	not imapwarden.decision.allow with input as held_cmd("bob", {"name": "DELETE", "mailbox": "Legal"})
		with data.legal_hold as hold
	not imapwarden.decision.allow with input as held_cmd("alice", {"name": "RENAME", "mailbox": "Projects", "destination": "Old"})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("alice", {"name": "RENAME", "mailbox": "Projects/Other", "destination": "Old"})
		with data.legal_hold as hold
}

test_unheld_user_may_expunge if {
	imapwarden.decision.allow with input as held_cmd("bob", {"name": "EXPUNGE", "selected": {"mailbox": "INBOX", "read_only": false}})
		with data.legal_hold as hold
}

test_copy_and_append_allowed if {
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "COPY", "destination": "Archive", "selected": {"mailbox": "INBOX", "read_only": false}})
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("erin", {"name": "APPEND", "mailbox": "INBOX", "literal_bytes": 100})
		with data.legal_hold as hold
}

test_unseen_mailbox_refused_while_holds_exist if {
	streamed := {"name": "DELETE", "partial": false, "complete": false}
	not imapwarden.decision.allow with input as held_cmd("bob", streamed)
		with data.legal_hold as hold

	# Before "+" of a small literal (partial), the name comes later.
	imapwarden.decision.allow with input as held_cmd("bob", object.union(streamed, {"partial": true}))
		with data.legal_hold as hold
	imapwarden.decision.allow with input as held_cmd("bob", streamed)
		with data.legal_hold as {"users": [], "mailboxes": {}}
}
