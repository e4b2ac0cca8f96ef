package readonly_test

import data.imapwarden

cmd(user, groups, name) := {"point": "command", "command": {"name": name}, "session": {
	"user": user, "groups": groups, "tls": {"version": "TLS1.3"},
}}

test_readonly_group_refused_changes if {
	every name in ["APPEND", "STORE", "EXPUNGE", "COPY", "MOVE", "CREATE", "DELETE", "RENAME", "SETACL", "SELECT"] {
		not imapwarden.decision.allow with input as cmd("dave", ["auditors"], name)
			with data.readonly as {"users": [], "groups": ["auditors"]}

		# Other policies may refuse too (acl for SETACL): check ours did.
		some x in imapwarden.deny with input as cmd("dave", ["auditors"], name)
			with data.readonly as {"users": [], "groups": ["auditors"]}
		x.policy == "readonly"
		x.code == "NOPERM"
	}
}

test_readonly_user_by_name if {
	d := imapwarden.decision with input as cmd("Dave", [], "STORE")
		with data.readonly as {"users": ["dave"], "groups": []}
	d.allow == false
}

test_select_refused_with_hint if {
	d := imapwarden.decision with input as cmd("dave", ["auditors"], "SELECT")
		with data.readonly as {"users": [], "groups": ["auditors"]}
	contains(d.reason, "EXAMINE")
}

test_readonly_may_read if {
	every name in ["EXAMINE", "FETCH", "SEARCH", "LIST", "STATUS", "CLOSE", "UNSELECT", "GETACL"] {
		imapwarden.decision.allow with input as cmd("dave", ["auditors"], name)
			with data.readonly as {"users": [], "groups": ["auditors"]}
	}
}

test_others_unaffected if {
	imapwarden.decision.allow with input as cmd("alice", ["staff"], "STORE")
		with data.readonly as {"users": ["dave"], "groups": ["auditors"]}
}

test_readonly_inspects_what_it_refuses if {
	{"SELECT", "APPEND", "STORE", "EXPUNGE", "COPY", "MOVE", "SETACL"} - imapwarden.inspect == set()
}
