package business_hours_test

import data.imapwarden

hours := {"end_sessions": true, "groups": {"shift": {"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "start": "08:00", "end": "18:00"}}}

at(point, groups, weekday, hour, minute) := {
	"point": point,
	"session": {"user": "frank", "groups": groups, "tls": {"version": "TLS1.3"}},
	"command": {"name": "FETCH"},
	"now": {"weekday": weekday, "hour": hour, "minute": minute, "clock": sprintf("%02d:%02d", [hour, minute])},
}

test_inside_hours_allowed if {
	imapwarden.decision.allow with input as at("auth", ["shift"], "Monday", 8, 0) with data.business_hours as hours
	imapwarden.decision.allow with input as at("auth", ["shift"], "Friday", 17, 59) with data.business_hours as hours
}

test_login_outside_hours_refused if {
	every t in [["Monday", 7, 59], ["Monday", 18, 0], ["Saturday", 12, 0]] {
		d := imapwarden.decision with input as at("auth", ["shift"], t[0], t[1], t[2]) with data.business_hours as hours
		d.allow == false
		d.disconnect == false
		d.annotations == {"policy": "business_hours", "group": "shift"}
	}
}

test_session_ended_after_hours if {
	d := imapwarden.decision with input as at("command", ["shift"], "Tuesday", 18, 30) with data.business_hours as hours
	d.allow == false
	d.disconnect == true
	"FETCH" in imapwarden.inspect with data.business_hours as hours
}

test_sessions_kept_without_end_sessions if {
	h := object.union(hours, {"end_sessions": false})
	imapwarden.decision.allow with input as at("command", ["shift"], "Tuesday", 18, 30) with data.business_hours as h
	not "FETCH" in imapwarden.inspect with data.business_hours as h
}

test_other_groups_unrestricted if {
	imapwarden.decision.allow with input as at("auth", ["staff"], "Sunday", 3, 0) with data.business_hours as hours
}

test_no_groups_no_inspection if {
	not "FETCH" in imapwarden.inspect with data.business_hours as {"end_sessions": true, "groups": {}}
}

test_full_day_names if {
	h := {"end_sessions": true, "groups": {"shift": {"days": ["Monday"], "start": "08:00", "end": "18:00"}}}
	imapwarden.decision.allow with input as at("auth", ["shift"], "Monday", 9, 0) with data.business_hours as h
	not imapwarden.decision.allow with input as at("auth", ["shift"], "Tuesday", 9, 0) with data.business_hours as h
}
