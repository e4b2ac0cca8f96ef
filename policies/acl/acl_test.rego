package acl_test

import data.imapwarden

acl_cmd(groups, name, kind) := {"point": "command", "command": {"name": name, "mailbox": "Shared", "effects": [{"kind": kind, "target": "mailbox", "mailbox": "Shared"}]}, "session": {
	"user": "alice", "groups": groups, "tls": {"version": "TLS1.3"},
}}

test_setacl_refused_for_users if {
	every name in ["SETACL", "DELETEACL"] {
		d := imapwarden.decision with input as acl_cmd(["staff"], name, "acl") with data.acl.admin_groups as ["admins"]
		d.allow == false
		d.code == "NOPERM"
		d.annotations.policy == "acl"
	}
}

test_setacl_allowed_for_admins if {
	imapwarden.decision.allow with input as acl_cmd(["staff", "admins"], "SETACL", "acl") with data.acl.admin_groups as ["admins"]
}

test_reading_rights_allowed if {
	every name in ["GETACL", "MYRIGHTS", "LISTRIGHTS"] {
		imapwarden.decision.allow with input as acl_cmd([], name, "read-metadata") with data.acl.admin_groups as ["admins"]
	}
}
