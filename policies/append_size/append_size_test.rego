package append_size_test

import data.imapwarden

limits := {"default_bytes": 1000, "groups": {"small": 100, "big": 5000}}

append_with(groups, n, urls) := {"point": "command", "command": {
	"name": "APPEND", "mailbox": "INBOX", "literal_bytes": n, "append_urls": urls,
	"effects": [{"kind": "create-messages", "target": "mailbox", "mailbox": "INBOX"}],
}, "session": {"user": "alice", "groups": groups, "tls": {"version": "TLS1.3"}}}

append(groups, n) := append_with(groups, n, 0)

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
	imapwarden.decision.allow with input as append_with([], 10, 2)
		with data.append_size as {"default_bytes": 0, "groups": {"small": 100}}
}

# CATENATE URL parts (attack E of issue 11): their size is not known, so
# they are refused wherever a limit applies, however small the literals.
test_catenate_urls_refused_under_a_limit if {
	d := imapwarden.decision with input as append_with(["big"], 10, 1) with data.append_size as limits
	d.allow == false
	d.code == "TOOBIG"
	d.annotations.urls == 1
}

test_copy_not_an_append if {
	imapwarden.decision.allow with input as {"point": "command", "command": {
		"name": "COPY", "literal_bytes": 0,
		"effects": [{"kind": "create-messages", "target": "destination", "mailbox": "Archive"}],
	}, "session": {"user": "alice", "groups": ["small"], "tls": {"version": "TLS1.3"}}}
		with data.append_size as limits
}
