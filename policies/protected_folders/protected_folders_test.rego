package protected_folders_test

import data.imapwarden

protected := {"mailboxes": ["INBOX", "Sent", "Drafts"]}

mbox_cmd(kind, mailbox) := {"point": "command", "command": {"name": "X", "effects": [{"kind": kind, "target": "mailbox", "mailbox": mailbox}]}, "session": {
	"user": "alice", "groups": [], "tls": {"version": "TLS1.3"},
}}

test_delete_protected_refused if {
	every mailbox in ["INBOX", "Sent", "drafts", "SENT"] {
		d := imapwarden.decision with input as mbox_cmd("delete-mailbox", mailbox)
			with data.protected_folders as protected
		d.allow == false
		d.code == "NOPERM"
		d.annotations.policy == "protected_folders"
	}
}

test_rename_protected_refused if {
	d := imapwarden.decision with input as mbox_cmd("rename-mailbox", "Sent")
		with data.protected_folders as protected
	d.reason == "Sent is protected and cannot be renamed"
}

test_other_mailboxes_allowed if {
	imapwarden.decision.allow with input as mbox_cmd("delete-mailbox", "Sent/2019")
		with data.protected_folders as protected
	imapwarden.decision.allow with input as mbox_cmd("rename-mailbox", "Projects")
		with data.protected_folders as protected
}

test_other_effects_allowed if {
	imapwarden.decision.allow with input as mbox_cmd("select-read-write", "INBOX")
		with data.protected_folders as protected

	# Creating a mailbox named like a protected one (RENAME's new name).
	imapwarden.decision.allow with input as mbox_cmd("create-mailbox", "Sent")
		with data.protected_folders as protected
}

# A parent's RENAME moves its inferiors (RFC 9051 §6.3.6), a DELETE may take
# them: refused when a protected mailbox is inside, under the backend's
# delimiter (attack40 finding 5).
test_parent_of_protected_refused if {
	nested := {"mailboxes": ["Victim/Contracts", "INBOX.Sent"]}
	d := imapwarden.decision with input as mbox_cmd("rename-mailbox", "Victim")
		with data.protected_folders as nested
	d.allow == false
	d.reason == "Victim holds the protected Victim/Contracts and cannot be renamed"
	not imapwarden.decision.allow with input as mbox_cmd("delete-mailbox", "victim")
		with data.protected_folders as nested
	not imapwarden.decision.allow with input as mbox_cmd("rename-mailbox", "INBOX")
		with data.protected_folders as nested

	# A sibling sharing a prefix, a child of the protected one: allowed.
	imapwarden.decision.allow with input as mbox_cmd("rename-mailbox", "Vic")
		with data.protected_folders as nested
	imapwarden.decision.allow with input as mbox_cmd("rename-mailbox", "Victim/Contracts/2019")
		with data.protected_folders as nested
	imapwarden.decision.allow with input as mbox_cmd("rename-mailbox", "Victim/Other")
		with data.protected_folders as nested
}

test_parent_by_backend_delimiter if {
	dotted := object.union(mbox_cmd("rename-mailbox", "Victim"), {"session": {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}, "delimiter": "."}})
	imapwarden.decision.allow with input as dotted
		with data.protected_folders as {"mailboxes": ["Victim/Contracts"]}
	not imapwarden.decision.allow with input as dotted
		with data.protected_folders as {"mailboxes": ["Victim.Contracts"]}
}

# Another user's protected mailbox through the other users' namespace
# (Cyrus "user.bob.Sent" is bob's "INBOX.Sent"; attack40 finding 1).
test_other_users_namespace_protected if {
	every kind in ["delete-mailbox", "rename-mailbox"] {
		c := {"point": "command", "command": {"name": "X", "effects": [{
			"kind": kind, "target": "mailbox", "mailbox": "user.bob.Sent",
			"namespace": "other", "owner": "bob", "owner_mailbox": "sent",
		}]}, "session": {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}}}
		d := imapwarden.decision with input as c with data.protected_folders as protected
		d.allow == false
		d.reason == sprintf("user.bob.Sent is protected and cannot be %s", [protected_verbs_test[kind]])
	}
}

protected_verbs_test := {"delete-mailbox": "deleted", "rename-mailbox": "renamed"}

test_other_users_namespace_unprotected_allowed if {
	c := {"point": "command", "command": {"name": "X", "effects": [{
		"kind": "delete-mailbox", "target": "mailbox", "mailbox": "user.bob.Old",
		"namespace": "other", "owner": "bob", "owner_mailbox": "Old",
	}]}, "session": {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}}}
	imapwarden.decision.allow with input as c with data.protected_folders as protected
}

# A shared namespace's mailbox has no owner the proxy reads (Courier's
# "#shared.bob.Sent" is bob's INBOX.Sent): refused unless configured.
# (No hold in force: legal_hold refuses them too while one is.)
shared_cmd(kind, mailbox) := {
	"point": "command", "command": {"name": "X", "effects": [{
		"kind": kind, "target": "mailbox", "mailbox": mailbox, "namespace": "shared",
	}]},
	"session": {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}},
}

no_hold := {"users": [], "mailboxes": {}}

test_shared_namespace_owner_unknown_refused if {
	every kind in ["delete-mailbox", "rename-mailbox"] {
		d := imapwarden.decision with input as shared_cmd(kind, "#shared.bob.Sent")
			with data.protected_folders as protected with data.legal_hold as no_hold
		d.allow == false
		d.reason == sprintf("#shared.bob.Sent is a shared mailbox of unknown owner and cannot be %s", [protected_verbs_test[kind]])
	}
}

test_shared_unprotected_allowed if {
	conf := object.union(protected, {"shared_unprotected": ["Public"]})
	imapwarden.decision.allow with input as shared_cmd("delete-mailbox", "Public")
		with data.protected_folders as conf with data.legal_hold as no_hold
	imapwarden.decision.allow with input as shared_cmd("rename-mailbox", "Public/Lists")
		with data.protected_folders as conf with data.legal_hold as no_hold
	not imapwarden.decision.allow with input as shared_cmd("delete-mailbox", "#shared.bob.Old")
		with data.protected_folders as conf with data.legal_hold as no_hold
	imapwarden.decision.allow with input as shared_cmd("delete-mailbox", "#shared.bob.Old")
		with data.protected_folders as {"mailboxes": []} with data.legal_hold as no_hold
	imapwarden.decision.allow with input as shared_cmd("create-mailbox", "#shared.bob.New")
		with data.protected_folders as protected with data.legal_hold as no_hold
}
