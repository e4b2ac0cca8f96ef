# Policy 5, protected folders: the mailboxes in data.protected_folders.mailboxes
# (INBOX, Sent, Drafts by default) cannot be deleted or renamed, whatever the
# case and the encoding the client spells them in (the proxy hands policies
# the canonical name: modified UTF-7 decoded, INBOX folded). Decided on the
# delete-mailbox and rename-mailbox effects (RENAME INBOX empties it).
package imapwarden

inspect_effects contains "delete-mailbox"

inspect_effects contains "rename-mailbox"

protected_mailbox(name) if {
	some m in data.protected_folders.mailboxes
	lower(m) == lower(name)
}

protected_verbs := {"delete-mailbox": "deleted", "rename-mailbox": "renamed"}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s is protected and cannot be %s", [e.mailbox, protected_verbs[e.kind]]),
} if {
	input.point == "command"
	some e in effects_of({"delete-mailbox", "rename-mailbox"})
	protected_mailbox(e.mailbox)
}
