# Policy 2, network allowlists per group: members of a group listed in
# data.network.groups may log in only from that group's networks (CIDRs),
# e.g. contractors only from the VPN, admins only from the office. A user in
# several listed groups must satisfy each of them (restrictions add up; give
# such users a group of their own). Users in no listed group are not
# restricted by this policy.
package imapwarden

deny contains {
	"policy": "network",
	"code": "AUTHORIZATIONFAILED",
	"reason": "Login not allowed from this network",
	"annotations": {"group": g},
} if {
	input.point == "auth"
	some g in input.session.groups
	networks := data.network.groups[g]
	not from_any(networks)
}

from_any(networks) if {
	some cidr in networks
	net.cidr_contains(cidr, input.session.client_ip)
}
