# Policy 7, ACL and quota changes only for admins: the acl effect (SETACL
# and DELETEACL, RFC 4314) and the quota effect (SETQUOTA, RFC 9208) are
# refused unless the user is in one of data.acl.admin_groups. Reading
# rights and quotas (GETACL, MYRIGHTS, LISTRIGHTS, GETQUOTA) stays allowed.
# Even an admin may not share a mailbox with everyone: a SETACL that grants
# rights to anyone, anonymous or authenticated (in any case: backends fold
# these names differently) is refused unless data.acl.allow_public_grants
# is true. Taking rights away from them (DELETEACL, "-" rights, negative
# rights "-anyone") stays an admin's.
package imapwarden

inspect_effects contains "acl"

inspect_effects contains "quota"

acl_admin if {
	some g in input.session.groups
	g in data.acl.admin_groups
}

# Identifiers that name every user, or every client (RFC 4314 §2:
# "anyone"; Cyrus's "anonymous"; Dovecot's "authenticated").
acl_public_identifiers := {"anyone", "anonymous", "authenticated"}

deny contains {
	"policy": "acl",
	"code": "NOPERM",
	"reason": "Only administrators may change access rights",
} if {
	input.point == "command"
	count(effects_of({"acl"})) > 0
	not acl_admin
}

deny contains {
	"policy": "acl",
	"code": "NOPERM",
	"reason": "Only administrators may change quotas",
} if {
	input.point == "command"
	count(effects_of({"quota"})) > 0
	not acl_admin
}

deny contains {
	"policy": "acl",
	"code": "NOPERM",
	"reason": "Rights may not be granted to everyone (anyone, anonymous, authenticated)",
} if {
	input.point == "command"
	a := input.command.acl
	a.mode in {"replace", "add"}
	not a.negative
	a.rights != ""
	lower(a.grantee) in acl_public_identifiers
	not data.acl.allow_public_grants == true
}

# Fail closed: a whole ACL change whose identifier the input does not carry.
deny contains {
	"policy": "acl",
	"code": "NOPERM",
	"reason": "ACL change without an identifier",
} if {
	input.point == "command"
	input.command.complete
	count(effects_of({"acl"})) > 0
	not input.command.acl
}
