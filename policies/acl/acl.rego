# Policy 7, ACL changes only for admins: the acl effect (SETACL and DELETEACL,
# RFC 4314) is refused unless the user is in one of data.acl.admin_groups.
# Reading rights (GETACL, MYRIGHTS, LISTRIGHTS) stays allowed.
package imapwarden

inspect_effects contains "acl"

acl_admin if {
	some g in input.session.groups
	g in data.acl.admin_groups
}

deny contains {
	"policy": "acl",
	"code": "NOPERM",
	"reason": "Only administrators may change access rights",
} if {
	input.point == "command"
	count(effects_of({"acl"})) > 0
	not acl_admin
}
