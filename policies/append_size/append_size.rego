# Policy 6, maximum APPEND size by group: data.append_size.groups maps a group
# to the largest message (bytes) its members may add; a user in several
# listed groups gets the largest of their limits, a user in none
# data.append_size.default_bytes (absent or 0: only the proxy's own limit).
#
# Decided on the create-messages effect. input.command.literal_bytes counts
# the literal announced at the decision point too, so a {n} over the limit
# gets NO instead of "+" and a {n+} is discarded before any of it reaches
# the backend. A CATENATE URL part (RFC 4469) copies a message whose size
# the proxy cannot know (input.command.append_urls): refused wherever a
# limit applies.
package imapwarden

inspect_effects contains "create-messages"

group_limits contains n if {
	some g in input.session.groups
	n := data.append_size.groups[g]
}

append_limit := max(group_limits) if {
	count(group_limits) > 0
} else := data.append_size.default_bytes if {
	data.append_size.default_bytes > 0
}

append_command if {
	input.point == "command"
	count(effects_of({"create-messages"})) > 0
	input.command.name == "APPEND"
}

deny contains {
	"policy": "append_size",
	"code": "TOOBIG",
	"reason": sprintf("Message too big: the limit is %d bytes", [append_limit]),
	"annotations": {"limit": append_limit, "size": input.command.literal_bytes},
} if {
	append_command
	input.command.literal_bytes > append_limit
}

deny contains {
	"policy": "append_size",
	"code": "TOOBIG",
	"reason": sprintf("CATENATE URL parts are not accepted: the limit is %d bytes", [append_limit]),
	"annotations": {"limit": append_limit, "urls": input.command.append_urls},
} if {
	append_command
	input.command.append_urls > 0
	append_limit
}
