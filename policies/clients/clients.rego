# Policy 9, allowed mail clients per group: members of a group listed in
# data.clients.groups may log in only with a client whose ID "name"
# (RFC 2971, sent before login) is in that group's list, compared
# case-insensitively. A client that sends no ID before login is refused.
# The ID is what the client claims: this keeps a fleet on supported
# software, it does not authenticate the software.
package imapwarden

client_name := lower(input.session.client_id.name)

deny contains {
	"policy": "clients",
	"code": "AUTHORIZATIONFAILED",
	"reason": "This mail client is not allowed; send ID before login",
	"annotations": {"group": g},
} if {
	input.point == "auth"
	some g in input.session.groups
	allowed := data.clients.groups[g]
	not client_allowed(allowed)
}

client_allowed(allowed) if {
	some name in allowed
	lower(name) == client_name
}
