package difftest

// The seven attacks of issue 11 and its "also seen" list, as scripts
// (script.go): the regression tests run them, and they seed the fuzz
// target's corpus.
var (
	// AttackA: a backslash before an ordinary letter. Dovecot drops it
	// and acts on Legal, Sent, Drafts; the policies saw "Lega\l".
	AttackA = `a SELECT "$PLega\l"
b STORE 1:* +FLAGS.SILENT (\Deleted)
c EXPUNGE
d RENAME "$PSen\t" "$PStolen"
e DELETE "$PDraft\s"
`
	// AttackB: CLOSE expunges what is already \Deleted in a mailbox
	// opened read-write (RFC 9051 §6.4.1).
	AttackB = `a SELECT "$PLegal"
b CLOSE
`
	// AttackC: STORE and EXPUNGE sent as soon as the first SELECT's OK
	// is seen, while the second SELECT (of Legal) is in flight.
	AttackC = `a SELECT INBOX
n1 FETCH 1:* (BODY.PEEK[] FLAGS)
n2 NOOP
b SELECT "$PLegal"
!wait a
c STORE 1:* +FLAGS.SILENT (\Deleted)
d EXPUNGE
`
	// AttackD: a tag Dovecot refuses with an untagged BAD; the SELECT
	// never runs and Legal stays selected.
	AttackD = `t2 SELECT "$PLegal"
!wait t2
a]b SELECT INBOX
t3 STORE 1:* +FLAGS.SILENT (\Deleted)
t4 EXPUNGE
`
	// AttackE: CATENATE URL parts (RFC 4469) copy messages whose size the
	// APPEND limit never saw; small may append 2000 bytes.
	AttackE = `!user small
a APPEND "$PKeep" CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=2")
`
	// AttackF: one FETCH of the whole mailbox on a fresh counter, against
	// a 20 KiB / 10-message cap.
	AttackF = `!user capf
a SELECT INBOX
b FETCH 1:* BODY.PEEK[]
`
	// AttackG: bodies pushed by NOTIFY (RFC 5465) while IDLE, on top of a
	// FETCH, past the cap. (MessageNew needs MessageExpunge beside it,
	// RFC 5465 §5.)
	AttackG = `!user capg
a SELECT INBOX
b FETCH 1:5 (UID BODY.PEEK[])
c NOTIFY SET (selected (MessageNew (UID BODY.PEEK[]) MessageExpunge))
d IDLE
!deliver INBOX
!deliver INBOX
!deliver INBOX
DONE
e NOOP
`
	// SeenPreview: PREVIEW (RFC 8970) counted against the cap: bodies
	// spend most of it, then previews of the whole mailbox.
	SeenPreview = `!user capp
a SELECT INBOX
b FETCH 1:* BODY.PEEK[]
`
	SeenPreviewAfter = `!user capp
c SELECT INBOX
d FETCH 1:* (PREVIEW)
`
	// SeenDelims: a trailing delimiter, "." and ".." levels.
	SeenDelims = `a DELETE "$PSent$D"
b DELETE "INBOX$D..$D$PSent"
c RENAME "$PSent$D" "$PStolen"
d DELETE "$PSent/"
e DELETE "INBOX/../$PSent"
f DELETE "$PLegal$D$D"
`
	// SeenUTF7: names that are not modified UTF-7 (RFC 3501 §5.1.3).
	SeenUTF7 = `a DELETE "$PEntw&APx-rfe"
b DELETE "$PEntw&APw"
c DELETE "$PEntw&AP-rfe"
d CREATE "$PEntw&APw-&AHI-fe"
e DELETE "$PEntwürfe"
f DELETE "$P&AEU-ntw&APw-rfe"
`
	// SeenBrackets: "[" ... "]" is not one atom outside FETCH items.
	SeenBrackets = `a DELETE [x $PVictim]
b SELECT [a $PLegal]
c RENAME [$PVictim x] "$PStolen"
`
	// SeenReadOnly: a read-only user subscribes.
	SeenReadOnly = `!user rouser
a SUBSCRIBE "$PKeep"
b UNSUBSCRIBE INBOX
`
	// SeenTag: a tag the backend never completes.
	SeenTag = `a]b NOOP
z NOOP
`
)

// Seeds are the attacks as the fuzz target's seed corpus.
var Seeds = []string{AttackA, AttackB, AttackC, AttackD, AttackE, AttackF, AttackG,
	SeenPreview + SeenPreviewAfter[len("!user capp\n"):], SeenDelims, SeenUTF7, SeenBrackets, SeenReadOnly, SeenTag}
