package protected_folders_test

import data.imapwarden

protected := {"mailboxes": ["INBOX", "Sent", "Drafts"]}

mbox_cmd(name, mailbox) := {"point": "command", "command": {"name": name, "mailbox": mailbox, "destination": "Other"}, "session": {
	"user": "alice", "groups": [], "tls": {"version": "TLS1.3"},
}}

test_delete_protected_refused if {
	every mailbox in ["INBOX", "Sent", "drafts", "SENT"] {
		d := imapwarden.decision with input as mbox_cmd("DELETE", mailbox)
			with data.protected_folders as protected
		d.allow == false
		d.code == "NOPERM"
		d.annotations.policy == "protected_folders"
	}
}

test_rename_protected_refused if {
	d := imapwarden.decision with input as mbox_cmd("RENAME", "Sent")
		with data.protected_folders as protected
	d.reason == "Sent is protected and cannot be renamed"
}

test_other_mailboxes_allowed if {
	imapwarden.decision.allow with input as mbox_cmd("DELETE", "Sent/2019")
		with data.protected_folders as protected
	imapwarden.decision.allow with input as mbox_cmd("RENAME", "Projects")
		with data.protected_folders as protected
}

test_other_commands_allowed if {
	imapwarden.decision.allow with input as mbox_cmd("SELECT", "INBOX")
		with data.protected_folders as protected
}
