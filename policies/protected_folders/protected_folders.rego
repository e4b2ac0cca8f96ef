# Policy 5, protected folders: the mailboxes in data.protected_folders.mailboxes
# (INBOX, Sent, Drafts by default) cannot be deleted or renamed, whatever the
# case the client spells them in.
package imapwarden

inspect contains "DELETE"

inspect contains "RENAME"

protected_mailbox(name) if {
	some m in data.protected_folders.mailboxes
	lower(m) == lower(name)
}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s is protected and cannot be deleted", [input.command.mailbox]),
} if {
	input.point == "command"
	input.command.name == "DELETE"
	protected_mailbox(input.command.mailbox)
}

deny contains {
	"policy": "protected_folders",
	"code": "NOPERM",
	"reason": sprintf("%s is protected and cannot be renamed", [input.command.mailbox]),
} if {
	input.point == "command"
	input.command.name == "RENAME"
	protected_mailbox(input.command.mailbox)
}
