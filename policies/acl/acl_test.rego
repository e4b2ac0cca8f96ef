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

setacl(groups, identifier, rights) := {"point": "command", "command": {
	"name": "SETACL", "mailbox": "INBOX", "complete": true,
	"effects": [{"kind": "acl", "target": "mailbox", "mailbox": "INBOX"}],
	"acl": object.union(
		{"identifier": identifier, "grantee": trim_prefix(identifier, "-"), "negative": startswith(identifier, "-")},
		mode_rights(rights),
	),
}, "session": {"user": "alice", "groups": groups, "tls": {"version": "TLS1.3"}}}

mode_rights(r) := {"mode": "add", "rights": substring(r, 1, -1)} if startswith(r, "+")

mode_rights(r) := {"mode": "remove", "rights": substring(r, 1, -1)} if startswith(r, "-")

mode_rights(r) := {"mode": "replace", "rights": r} if {
	not startswith(r, "+")
	not startswith(r, "-")
}

test_public_grant_refused_even_for_admins if {
	every id in ["anyone", "ANYONE", "anonymous", "Authenticated"] {
		every r in ["lrswipkxtea", "+l", "r"] {
			d := imapwarden.decision with input as setacl(["admins"], id, r) with data.acl.admin_groups as ["admins"]
			d.allow == false
			d.code == "NOPERM"
			d.annotations.policy == "acl"
		}
	}
}

test_public_grant_allowed_by_flag if {
	imapwarden.decision.allow with input as setacl(["admins"], "anyone", "lr")
		with data.acl.admin_groups as ["admins"] with data.acl.allow_public_grants as true
}

test_public_rights_taken_away_allowed if {
	every c in [["anyone", "-lr"], ["anyone", ""], ["-anyone", "lr"]] {
		imapwarden.decision.allow with input as setacl(["admins"], c[0], c[1]) with data.acl.admin_groups as ["admins"]
	}
	imapwarden.decision.allow with input as json.patch(setacl(["admins"], "anyone", ""), [{"op": "replace", "path": "/command/acl", "value": {"identifier": "anyone", "grantee": "anyone", "negative": false, "mode": "delete"}}])
		with data.acl.admin_groups as ["admins"]
}

test_grant_to_a_colleague_allowed_for_admins if {
	every id in ["bob", "$staff", "group:staff", "anyone2"] {
		imapwarden.decision.allow with input as setacl(["admins"], id, "lrswipkxtea") with data.acl.admin_groups as ["admins"]
	}
}

test_acl_change_without_identifier_refused if {
	d := imapwarden.decision with input as json.remove(setacl(["admins"], "bob", "lr"), ["command/acl"]) with data.acl.admin_groups as ["admins"]
	d.allow == false
}

test_setquota_admins_only if {
	q := {"point": "command", "command": {
		"name": "SETQUOTA", "complete": true, "effects": [{"kind": "quota", "target": "session"}],
		"quota": {"root": "user.bob", "limits": {"STORAGE": 0}},
	}, "session": {"user": "alice", "groups": ["staff"], "tls": {"version": "TLS1.3"}}}
	d := imapwarden.decision with input as q with data.acl.admin_groups as ["admins"]
	d.allow == false
	d.code == "NOPERM"
	imapwarden.decision.allow with input as json.patch(q, [{"op": "replace", "path": "/session/groups", "value": ["admins"]}]) with data.acl.admin_groups as ["admins"]
}
