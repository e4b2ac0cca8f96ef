package readonly_test

import data.imapwarden

cmd(user, groups, name, kinds) := {"point": "command", "command": {"name": name, "effects": [{"kind": k, "target": "mailbox", "mailbox": "INBOX"} | some k in kinds]}, "session": {
	"user": user, "groups": groups, "tls": {"version": "TLS1.3"},
}}

# What each command does, as proxy/imapwire's table says.
writes := {
	"APPEND": ["create-messages"],
	"STORE": ["set-flags"],
	"EXPUNGE": ["expunge"],
	"CLOSE": ["select", "expunge"],
	"COPY": ["create-messages", "read-metadata"],
	"MOVE": ["create-messages", "expunge"],
	"CREATE": ["create-mailbox"],
	"DELETE": ["delete-mailbox"],
	"RENAME": ["rename-mailbox", "create-mailbox"],
	"SUBSCRIBE": ["subscriptions"],
	"SETACL": ["acl"],
	"SETMETADATA": ["metadata"],
	"SETQUOTA": ["quota"],
	"SELECT": ["select-read-write", "read-metadata"],
	"FETCH": ["read-metadata", "read-content", "set-flags"],
}

test_readonly_group_refused_changes if {
	every name, kinds in writes {
		not imapwarden.decision.allow with input as cmd("dave", ["auditors"], name, kinds)
			with data.readonly as {"users": [], "groups": ["auditors"]}

		# Other policies may refuse too (acl for SETACL): check ours did.
		some x in imapwarden.deny with input as cmd("dave", ["auditors"], name, kinds)
			with data.readonly as {"users": [], "groups": ["auditors"]}
		x.policy == "readonly"
		x.code == "NOPERM"
	}
}

test_readonly_user_by_name if {
	d := imapwarden.decision with input as cmd("Dave", [], "STORE", ["set-flags"])
		with data.readonly as {"users": ["dave"], "groups": []}
	d.allow == false
}

test_select_refused_with_hint if {
	d := imapwarden.decision with input as cmd("dave", ["auditors"], "SELECT", ["select-read-write", "read-metadata"])
		with data.readonly as {"users": [], "groups": ["auditors"]}
	contains(d.reason, "EXAMINE")
}

test_subscribe_refused if {
	d := imapwarden.decision with input as cmd("dave", ["auditors"], "SUBSCRIBE", ["subscriptions"])
		with data.readonly as {"users": [], "groups": ["auditors"]}
	d.reason == "Read-only account: cannot change subscriptions"
}

test_readonly_may_read if {
	reads := {
		"EXAMINE": ["select", "read-metadata"],
		"FETCH": ["read-metadata", "read-content"], # BODY.PEEK, or after EXAMINE
		"SEARCH": ["read-metadata"],
		"LIST": ["read-metadata"],
		"STATUS": ["read-metadata"],
		"CLOSE": ["select"], # after EXAMINE: nothing expunged
		"UNSELECT": ["select"],
		"GETACL": ["read-metadata"],
		"ENABLE": ["session"],
		"NOOP": [],
	}
	every name, kinds in reads {
		imapwarden.decision.allow with input as cmd("dave", ["auditors"], name, kinds)
			with data.readonly as {"users": [], "groups": ["auditors"]}
	}
}

test_others_unaffected if {
	imapwarden.decision.allow with input as cmd("alice", ["staff"], "STORE", ["set-flags"])
		with data.readonly as {"users": ["dave"], "groups": ["auditors"]}
}

test_readonly_inspects_every_write if {
	{"select-read-write", "create-messages", "set-flags", "expunge", "subscriptions", "acl"} - imapwarden.inspect_effects == set()
}
