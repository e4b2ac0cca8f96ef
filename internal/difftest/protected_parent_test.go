package difftest

import "testing"

// TestProtectedChildNotRenamedWithParent (attack40 finding 5): a RENAME of
// a parent moves its inferiors (RFC 9051 §6.3.6), so protected_folders
// refuses renaming or deleting a parent of a protected mailbox (a
// deployment's "Victim/Contracts"), as legal_hold does with holds_inside.
func TestProtectedChildNotRenamedWithParent(t *testing.T) {
	Binary(t)
	b := StartBackend(t, "dovecot")
	b.Setup(t, "alice")
	pc := ProxyFor(b)
	pc.PolicyData["protected_folders"] = "mailboxes: [\"Victim/Contracts\"]\n"
	w := newEnv(t, b, StartProxy(t, pc), "alice", &received{octets: map[string]int64{}, msgs: map[string]int64{}})
	// One step: the harness's reset removes mailboxes a step created.
	st, err := ParseScript(w.B, []byte("a CREATE \"Victim/Contracts\"\nb RENAME \"Victim\" \"Gone\"\nc DELETE \"Victim\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	o, _ := w.Run(st)
	wantStatus(t, o, "a", "OK")
	wantStatus(t, o, "b", "NO")
	wantStatus(t, o, "c", "NO")
	if o.After.Boxes[b.Canonical("Victim/Contracts")] == nil || o.After.Boxes[b.Canonical("Gone/Contracts")] != nil {
		t.Errorf("the protected Victim/Contracts was renamed or deleted with its parent (b: %q, c: %q)", o.Done["b"].Text, o.Done["c"].Text)
	}
}
