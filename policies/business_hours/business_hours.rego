# Policy 8, business hours per group: data.business_hours.groups maps a group
# to the days ("Mon".."Sun" or "Monday".."Sunday") and hours ("HH:MM", two
# digits each, end excluded) its members may work, in imapwarden's
# configured time zone (input.now). Outside them a login is
# refused and, with data.business_hours.end_sessions, a session still open
# is ended with BYE at its next command. A user in several listed groups must
# be inside the hours of each.
#
# Ending sessions needs every command inspected, so it is only switched on
# when some group is listed (the fast path stays for everyone otherwise).
package imapwarden

inspect contains name if {
	data.business_hours.end_sessions
	count(data.business_hours.groups) > 0
	some name in commands
}

# within(hours): now is on one of the days and between start and end
# ("HH:MM" strings compare like the times they spell).
within(hours) if {
	today_listed(hours.days)
	input.now.clock >= hours.start
	input.now.clock < hours.end
}

today_listed(days) if substring(input.now.weekday, 0, 3) in days

today_listed(days) if input.now.weekday in days

outside_hours contains g if {
	some g in input.session.groups
	hours := data.business_hours.groups[g]
	not within(hours)
}

deny contains {
	"policy": "business_hours",
	"code": "NOPERM",
	"reason": "Access is limited to business hours",
	"annotations": {"group": g},
} if {
	input.point in {"auth", "route"}
	some g in outside_hours
}

deny contains {
	"policy": "business_hours",
	"code": "NOPERM",
	"reason": "Business hours are over",
	"disconnect": true,
	"annotations": {"group": g},
} if {
	input.point == "command"
	data.business_hours.end_sessions
	some g in outside_hours
}
