package network_test

import data.imapwarden

auth(user, groups, ip) := {"point": "auth", "session": {
	"user": user, "groups": groups, "client_ip": ip,
	"tls": {"version": "TLS1.3"},
}}

nets := {"contractors": ["10.8.0.0/16"], "admins": ["192.0.2.0/24", "2001:db8:1::/48"]}

test_contractor_from_vpn_allowed if {
	imapwarden.decision.allow with input as auth("carol", ["contractors"], "10.8.3.4")
		with data.network.groups as nets
}

test_contractor_from_elsewhere_denied if {
	d := imapwarden.decision with input as auth("carol", ["contractors"], "198.51.100.7")
		with data.network.groups as nets
	d.allow == false
	d.code == "AUTHORIZATIONFAILED"
	d.annotations == {"policy": "network", "group": "contractors"}
}

test_admin_ipv6_office_allowed if {
	imapwarden.decision.allow with input as auth("root", ["admins"], "2001:db8:1::25")
		with data.network.groups as nets
}

test_unlisted_group_unrestricted if {
	imapwarden.decision.allow with input as auth("alice", ["staff"], "198.51.100.7")
		with data.network.groups as nets
}

test_every_group_must_allow if {
	d := imapwarden.decision with input as auth("mallory", ["contractors", "admins"], "10.8.3.4")
		with data.network.groups as nets
	d.allow == false
	d.annotations.group == "admins"
}

test_commands_not_checked if {
	imapwarden.decision.allow with input as {"point": "command", "command": {"name": "FETCH"}, "session": {
		"user": "carol", "groups": ["contractors"], "client_ip": "198.51.100.7",
		"tls": {"version": "TLS1.3"},
	}}
		with data.network.groups as nets
}
