package baseline_test

import data.imapwarden

tls := {"version": "TLS1.3", "cipher": "TLS_AES_128_GCM_SHA256"}

test_auth_with_tls_allowed if {
	imapwarden.decision.allow with input as {"point": "auth", "session": {"user": "alice", "tls": tls, "client_ip": "192.0.2.1", "groups": []}}
}

test_auth_without_tls_denied if {
	d := imapwarden.decision with input as {"point": "auth", "session": {"user": "alice", "client_ip": "192.0.2.1", "groups": []}}
	d.allow == false
	d.code == "PRIVACYREQUIRED"
	d.annotations.policy == "baseline"
}

test_route_and_command_without_tls_denied if {
	not imapwarden.decision.allow with input as {"point": "route", "session": {"user": "alice", "client_ip": "192.0.2.1"}}
	not imapwarden.decision.allow with input as {"point": "command", "session": {"user": "alice", "client_ip": "192.0.2.1"}, "command": {"name": "FETCH"}}
}

test_connect_without_tls_allowed if {
	imapwarden.decision.allow with input as {"point": "connect", "session": {"client_ip": "192.0.2.1"}}
}

test_plaintext_network_trusted if {
	imapwarden.decision.allow with input as {"point": "auth", "session": {"user": "alice", "client_ip": "10.1.2.3", "groups": []}}
		with data.baseline.plaintext_networks as ["10.0.0.0/8"]
	not imapwarden.decision.allow with input as {"point": "auth", "session": {"user": "alice", "client_ip": "192.0.2.1", "groups": []}}
		with data.baseline.plaintext_networks as ["10.0.0.0/8"]
}

test_compress_refused if {
	d := imapwarden.decision with input as {"point": "command", "session": {"user": "alice", "tls": tls}, "command": {"name": "COMPRESS"}}
		with data.baseline.proxy_terminates_compress as false
	d.allow == false
	d.code == "CANNOT"
	"COMPRESS" in imapwarden.inspect with data.baseline.proxy_terminates_compress as false
}

test_compress_allowed_when_terminated if {
	imapwarden.decision.allow with input as {"point": "command", "session": {"user": "alice", "tls": tls}, "command": {"name": "COMPRESS"}}
		with data.baseline.proxy_terminates_compress as true
	not "COMPRESS" in imapwarden.inspect with data.baseline.proxy_terminates_compress as true
}

test_blocked_network_refused_at_connect if {
	d := imapwarden.decision with input as {"point": "connect", "session": {"client_ip": "203.0.113.9"}}
		with data.baseline.blocked_networks as ["203.0.113.0/24"]
	d.allow == false
	d.code == "NOPERM"
	imapwarden.decision.allow with input as {"point": "connect", "session": {"client_ip": "192.0.2.1"}}
		with data.baseline.blocked_networks as ["203.0.113.0/24"]
}
