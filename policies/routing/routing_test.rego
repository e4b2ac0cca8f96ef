package routing_test

import data.imapwarden

routes := {"users": {"alice": "archive"}, "groups": {"legacy": "old", "zz": "other"}}

route_for(user, groups) := {"point": "route", "session": {"user": user, "groups": groups, "tls": {"version": "TLS1.3"}}}

test_user_route if {
	imapwarden.decision == {"allow": true, "backend": "archive"} with input as route_for("Alice", ["legacy"]) with data.routing as routes
}

test_user_keys_lower_case if {
	count(imapwarden.data_errors) == 0 with data.routing as routes
	imapwarden.data_errors == {`routing.users: "Bob" is not lower case (write "bob"): logins are compared in lower case`} with data.routing as {"users": {"alice": "archive", "Bob": "old"}, "groups": {}}
}

test_group_route if {
	imapwarden.decision == {"allow": true, "backend": "old"} with input as route_for("bob", ["legacy", "zz"]) with data.routing as routes
}

test_no_route if {
	imapwarden.decision == {"allow": true} with input as route_for("carol", ["staff"]) with data.routing as routes
}

test_backend_only_at_route_point if {
	imapwarden.decision == {"allow": true} with input as {
		"point": "auth",
		"session": {"user": "alice", "groups": [], "tls": {"version": "TLS1.3"}},
	}
		with data.routing as routes
}

# Any policy's denial (here one as baseline makes without TLS) wins; the
# denial is given here so that the directory tests alone.
test_denial_wins_over_route if {
	d := imapwarden.decision with input as {"point": "route", "session": {"user": "alice", "groups": []}}
		with data.routing as routes
		with data.imapwarden.deny as {{"policy": "baseline", "reason": "TLS is required", "code": "PRIVACYREQUIRED"}}
	d.allow == false
	not d.backend
}
