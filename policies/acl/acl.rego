# Policy 7, ACL changes only for admins: SETACL and DELETEACL (RFC 4314) are
# refused unless the user is in one of data.acl.admin_groups. Reading rights
# (GETACL, MYRIGHTS, LISTRIGHTS) stays allowed.
package imapwarden

inspect contains "SETACL"

inspect contains "DELETEACL"

acl_admin if {
	some g in input.session.groups
	g in data.acl.admin_groups
}

acl_denial := {
	"policy": "acl",
	"code": "NOPERM",
	"reason": "Only administrators may change access rights",
}

# One rule per command, so that rule indexing skips both for any other.
deny contains acl_denial if {
	input.point == "command"
	input.command.name == "SETACL"
	not acl_admin
}

deny contains acl_denial if {
	input.point == "command"
	input.command.name == "DELETEACL"
	not acl_admin
}
