package append_size_test

import data.imapwarden

limits := {"default_bytes": 1000, "groups": {"small": 100, "big": 5000}}

append(groups, n) := {"point": "command", "command": {"name": "APPEND", "mailbox": "INBOX", "literal_bytes": n}, "session": {
	"user": "alice", "groups": groups, "tls": {"version": "TLS1.3"},
}}

test_group_limit if {
	imapwarden.decision.allow with input as append(["small"], 100) with data.append_size as limits
	d := imapwarden.decision with input as append(["small"], 101) with data.append_size as limits
	d.allow == false
	d.code == "TOOBIG"
	d.annotations == {"policy": "append_size", "limit": 100, "size": 101}
}

test_largest_group_limit_wins if {
	imapwarden.decision.allow with input as append(["small", "big"], 4000) with data.append_size as limits
}

test_default_limit if {
	imapwarden.decision.allow with input as append(["other"], 1000) with data.append_size as limits
	not imapwarden.decision.allow with input as append([], 1001) with data.append_size as limits
}

test_no_default_no_limit if {
	imapwarden.decision.allow with input as append([], 1000000000)
		with data.append_size as {"default_bytes": 0, "groups": {"small": 100}}
}
