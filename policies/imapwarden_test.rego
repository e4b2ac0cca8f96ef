package imapwarden_test

import data.imapwarden

session := {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}}

test_allow_by_default if {
	imapwarden.decision == {"allow": true} with input as {"point": "command", "session": session, "command": {"name": "NOOP"}}
}

test_denial_defaults if {
	d := imapwarden.decision with input as {"point": "auth", "session": session}
		with imapwarden.deny as {{"policy": "x"}}
	d == {"allow": false, "reason": "Denied by policy", "code": "NOPERM", "disconnect": false, "annotations": {"policy": "x"}}
}

test_disconnect_first if {
	d := imapwarden.decision with input as {"point": "auth", "session": session}
		with imapwarden.deny as {{"policy": "a", "reason": "a"}, {"policy": "z", "reason": "z", "disconnect": true}}
	d.reason == "z"
	d.disconnect == true
}

test_mailbox_under if {
	imapwarden.mailbox_under("Legal", "legal")
	imapwarden.mailbox_under("Legal/2024", "Legal")
	imapwarden.mailbox_under("Legal.2024", "Legal")
	not imapwarden.mailbox_under("Legalese", "Legal")
}

test_user_lower_case if {
	imapwarden.user == "alice" with input.session.user as "ALICE"
}
