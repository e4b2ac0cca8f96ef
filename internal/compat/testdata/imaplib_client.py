"""Drives imaplib through imapwarden for internal/compat.

Usage: imaplib_client.py HOST PORT imaps|starttls CAFILE USER PASS BIG_MSGID BIG_SHA256 SUBJECT

Prints one line per step; "IDLING" when in IDLE (the test then delivers a
message) and "DONE" at the end. Any failure raises and exits non-zero.
"""
import hashlib
import imaplib
import ssl
import sys

host, port, mode, cafile, user, pw, big_id, big_sum, subject = sys.argv[1:]
ctx = ssl.create_default_context(cafile=cafile)


def step(name):
    print(name, flush=True)


def check(typ, data, what):
    if typ != "OK":
        raise SystemExit("%s: %s %r" % (what, typ, data))
    return data


if mode == "imaps":
    m = imaplib.IMAP4_SSL(host, int(port), ssl_context=ctx, timeout=60)
else:
    m = imaplib.IMAP4(host, int(port), timeout=60)
    check(*m.starttls(ssl_context=ctx), "STARTTLS")
step("CONNECTED")
check(*m.login(user, pw), "LOGIN")
step("LOGIN")
boxes = check(*m.list(), "LIST")
if not any(b.split(b" ")[-1].strip(b'"').upper() == b"INBOX" for b in boxes):
    raise SystemExit("LIST lacks INBOX: %r" % boxes)
step("LIST")
check(*m.select("INBOX"), "SELECT")
step("SELECT")
uids = check(*m.uid("SEARCH", "HEADER", "Message-ID", '"%s"' % big_id), "UID SEARCH")[0].split()
if len(uids) != 1:
    raise SystemExit("UID SEARCH big: %r" % uids)
data = check(*m.uid("FETCH", uids[0], "(BODY.PEEK[])"), "UID FETCH")
body = data[0][1]
if hashlib.sha256(body).hexdigest() != big_sum:
    raise SystemExit("1 MB message differs: %d bytes" % len(body))
step("FETCH")
msg = ("From: bob@example.com\r\nTo: alice@example.com\r\nSubject: %s\r\n\r\nHello.\r\n" % subject).encode()
check(*m.append("INBOX", None, None, msg), "APPEND")
step("APPEND")
m.noop()
seqs = check(*m.search(None, "SUBJECT", '"%s"' % subject), "SEARCH")[0].split()
if len(seqs) != 1:
    raise SystemExit("SEARCH appended: %r" % seqs)
step("SEARCH")
flags = check(*m.store(seqs[0], "+FLAGS", "(\\Flagged \\Deleted)"), "STORE")
if b"\\Deleted" not in b" ".join(f for f in flags if f) or b"\\Flagged" not in b" ".join(f for f in flags if f):
    raise SystemExit("STORE flags: %r" % flags)
step("STORE")
gone = check(*m.expunge(), "EXPUNGE")
if seqs[0] not in gone:
    raise SystemExit("EXPUNGE: %r, want %r" % (gone, seqs[0]))
if check(*m.search(None, "SUBJECT", '"%s"' % subject), "SEARCH")[0].split():
    raise SystemExit("message still there after EXPUNGE")
step("EXPUNGE")

# imaplib of Python < 3.14 has no IDLE: send it by hand (RFC 2177). Only an
# EXISTS above the count SELECT reports now is the delivered message.
count = int(check(*m.select("INBOX"), "SELECT")[0])
tag = m._new_tag()
m.send(tag + b" IDLE\r\n")
line = m.readline()
while line.startswith(b"* "):
    line = m.readline()
if not line.startswith(b"+"):
    raise SystemExit("IDLE: %r" % line)
step("IDLING")
while True:
    line = m.readline()
    if not line:
        raise SystemExit("IDLE: connection closed")
    f = line.split()
    if len(f) == 3 and f[0] == b"*" and f[2].upper() == b"EXISTS" and int(f[1]) > count:
        break
m.send(b"DONE\r\n")
while True:
    line = m.readline()
    if not line:
        raise SystemExit("DONE: connection closed")
    if line.startswith(tag + b" "):
        if not line.startswith(tag + b" OK"):
            raise SystemExit("IDLE: %r" % line)
        break
step("IDLE")
m.logout()
step("DONE")
