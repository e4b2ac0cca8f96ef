# imaplib2 (offlineimap's IMAP library: a reader thread and a writer thread
# sharing one socket) through STARTTLS: connect, STARTTLS (imaplib2 sends
# CAPABILITY right after the handshake), then LOGOUT. A run whose
# CAPABILITY (or any answer: the greeting too) gets none within TIMEOUT
# seconds counts as a hang; the
# last line says "runs N hangs H".
# usage: imaplib2_starttls.py HOST PORT RUNS TIMEOUT
import sys, time, imaplib2

host, port, runs, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
hangs = 0
for i in range(runs):
    m = None
    try:
        # The greeting too: a slow one must not end the script.
        m = imaplib2.IMAP4(host, port, timeout=timeout)
        m.starttls(tls_level="tls_compat", ssl_version="ssl23")
        m.logout()
    except imaplib2.IMAP4.abort as e:
        hangs += 1
        print("run %d: %s" % (i, e), flush=True)
        try:
            if m is not None:
                m.shutdown()
        except Exception:
            pass
print("runs %d hangs %d" % (runs, hangs), flush=True)
