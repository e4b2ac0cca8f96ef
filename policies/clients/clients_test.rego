package clients_test

import data.imapwarden

allowed_clients := {"groups": {"managed": ["Thunderbird", "K-9 Mail"]}}

login_with(groups, client_id) := {"point": "auth", "session": {
	"user": "gina", "groups": groups, "client_id": client_id,
	"tls": {"version": "TLS1.3"},
}}

test_allowed_client if {
	imapwarden.decision.allow with input as login_with(["managed"], {"name": "thunderbird", "version": "128.0"})
		with data.clients as allowed_clients
}

test_other_client_refused if {
	d := imapwarden.decision with input as login_with(["managed"], {"name": "Outlook"})
		with data.clients as allowed_clients
	d.allow == false
	d.code == "AUTHORIZATIONFAILED"
	d.annotations.policy == "clients"
}

test_no_id_refused if {
	not imapwarden.decision.allow with input as login_with(["managed"], {})
		with data.clients as allowed_clients
}

test_unlisted_group_any_client if {
	imapwarden.decision.allow with input as login_with(["staff"], {})
		with data.clients as allowed_clients
}
