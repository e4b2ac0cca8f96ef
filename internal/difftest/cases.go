package difftest

import (
	"fmt"
	"strings"
)

// Case is one command template and the steps its spellings make.
type Case struct {
	Name  string
	Steps []*Step
}

// Spellings counts the steps of cases.
func Spellings(cases []*Case) int {
	n := 0
	for _, c := range cases {
		n += len(c.Steps)
	}
	return n
}

// msgLit is a small message as the backend takes it: {n+} with LITERAL+,
// else {n}.
func (g *Gen) msgLit(tag string) seg {
	m := string(Message("appended "+tag, 100))
	if g.B.Caps["LITERAL+"] {
		return L(m, litPlus)
	}
	return L(m, litSync)
}

// nameCase makes a case of one command template over the spellings of
// each base name; build makes a step's commands from one spelling.
func (g *Gen) nameCase(name string, bases []string, build func(base string, s Spelling) []Cmd) *Case {
	c := &Case{Name: name}
	for _, base := range bases {
		for _, s := range g.NameSpellings(base) {
			c.Steps = append(c.Steps, &Step{
				Label: fmt.Sprintf("%s [%s: %s]", name, base, s.Label),
				Cmds:  build(base, s),
			})
		}
	}
	return c
}

// one writes the segments after " VERB " as one command.
func one(tag, verb string, s Spelling, rest ...seg) Cmd {
	segs := append([]seg{T(" " + verb + " ")}, s.Segs...)
	return Build(tag, append(segs, rest...)...)
}

// Cases returns every case of the harness for the generator's backend.
func (g *Gen) Cases() []*Case {
	b := g.B
	w := b.Wire
	q := func(logical string) string { return Quote(w(logical)) }
	var cases []*Case

	cases = append(cases,
		g.nameCase("CREATE <name>", []string{"New", "Legal/New"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("c1", "CREATE", s)}
		}),
		g.nameCase("DELETE <name>", []string{"Victim", "Legal", "Sent", "Entwürfe", "INBOX"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("d1", "DELETE", s)}
		}),
		g.nameCase("RENAME <name> Moved", []string{"Victim", "Legal", "Drafts"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("r1", "RENAME", s, T(" "+q("Moved")))}
		}),
		g.nameCase("RENAME Victim <name>", []string{"Moved"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{Build("r2", append([]seg{T(" RENAME " + q("Victim") + " ")}, s.Segs...)...)}
		}),
		// Attack C/D's shape: the mailbox STORE and EXPUNGE act in is the
		// one the backend selected.
		g.nameCase(`SELECT <name>; STORE 1 +FLAGS.SILENT (\Deleted); EXPUNGE`, []string{"Legal", "Victim", "Keep", "Entwürfe", "INBOX"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("s1", "SELECT", s), Line("s2", `STORE 1 +FLAGS.SILENT (\Deleted)`), Line("s3", "EXPUNGE")}
		}),
		// Attack B's shape: CLOSE expunges what SELECT opened read-write.
		g.nameCase("SELECT <name>; CLOSE", []string{"Legal", "Victim"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("s1", "SELECT", s), Line("s2", "CLOSE")}
		}),
		g.nameCase("EXAMINE <name>; CLOSE", []string{"Legal"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("e1", "EXAMINE", s), Line("e2", "CLOSE")}
		}),
		g.nameCase("STATUS <name> (MESSAGES UIDVALIDITY)", []string{"Legal", "Legal/Sub", "Keep", "Entwürfe", "INBOX"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("t1", "STATUS", s, T(" (MESSAGES UIDVALIDITY)"))}
		}),
		g.nameCase("APPEND <name> message", []string{"Keep", "Legal"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("a1", "APPEND", s, T(" "), g.msgLit("a1"))}
		}),
		g.flagsCase(),
		g.nameCase("SELECT Victim; COPY 1 <name>", []string{"Keep"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{Line("k1", "SELECT "+q("Victim")), one("k2", "COPY 1", s)}
		}),
		g.nameCase("SELECT Victim; MOVE 1 <name>", []string{"Keep"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{Line("m1", "SELECT "+q("Victim")), one("m2", "MOVE 1", s)}
		}),
		g.nameCase("SELECT <name>; MOVE 1:* Keep", []string{"Legal"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("m1", "SELECT", s), Line("m2", "MOVE 1:* "+q("Keep"))}
		}),
		g.nameCase("SUBSCRIBE <name>", []string{"Keep", "Legal"}, func(_ string, s Spelling) []Cmd {
			return []Cmd{one("u1", "SUBSCRIBE", s)}
		}),
	)
	cases = append(cases, g.tagCase(), g.argCase(), g.spaceCase(), g.pipelineCase(), g.closeCase(), g.readOnlyCase(), g.headerNameCase(), g.paramsCase())
	if b.Caps["CATENATE"] {
		cases = append(cases, g.catenateCase())
	}
	if b.Caps["NOTIFY"] {
		cases = append(cases, g.notifyCase())
	}
	return cases
}

// headerNameCase fetches a body after a HEADER.FIELDS (or .NOT) list
// holding a name with every printable character, in each form (atom,
// quoted, literal), and the odd lists of attack46c: each backend echoes
// the names in its response (Cyrus unquoted), and the content after them
// must be in the trail, never lost to a name the proxy read otherwise
// (ARCHITECTURE.md §7, §12); a name the proxy cannot read back in every
// echo is refused.
func (g *Gen) headerNameCase() *Case {
	c := &Case{Name: "EXAMINE Keep; FETCH 1 (BODY.PEEK[HEADER.FIELDS (<names>)] BODY.PEEK[])"}
	k := Quote(g.B.Wire("Keep"))
	add := func(label string, names ...seg) {
		for _, fields := range []string{"HEADER.FIELDS", "HEADER.FIELDS.NOT"} {
			segs := append([]seg{T(" FETCH 1 (BODY.PEEK[" + fields + " (")}, names...)
			segs = append(segs, T(")] BODY.PEEK[])"))
			c.Steps = append(c.Steps, &Step{
				Label: fmt.Sprintf("EXAMINE Keep; FETCH 1 (BODY.PEEK[%s (%s)] BODY.PEEK[])", fields, label),
				Cmds:  []Cmd{Line("h1", "EXAMINE "+k), Build("h2", segs...)},
			})
		}
	}
	for _, x := range printable {
		n := "X" + string(x) + "Y"
		add("atom "+n, T(n))
		add("quoted "+Quote(n), T(Quote(n)))
		add("literal "+n, L(n, litSync))
	}
	for _, l := range []string{`"X[Y"`, `"X]Y"`, `"X[Y]"`, `"[" "]"`, `"X[" FROM`, `"X]" FROM`, `FROM "X]"`, `""`, `"X Y"`,
		`"X\Y"`, `"X"Y"`, `"X{2}"`, `"café"`, `FROM  TO`, `FROM TO`} {
		add(l, T(l))
	}
	add("literal {0}", L("", litSync))
	add("literal X Y", L("X Y", litSync))
	add("literal FROM, literal X[Y", L("FROM", litSync), T(" "), L("X[Y", litSync))
	return c
}

// flagsCase appends messages stored \Deleted (any case, RFC 9051
// §2.3.2) to a held and a free mailbox: the record must say mark-deleted,
// and legal_hold refuses it on Legal (ARCHITECTURE.md §10).
func (g *Gen) flagsCase() *Case {
	c := &Case{Name: "APPEND <name> (<flags>) message"}
	for _, box := range []string{"Keep", "Legal"} {
		// A flag ending in a character Courier ends a word at: refused
		// by the proxy, never relayed (ARCHITECTURE.md §7).
		for _, flags := range []string{`(\Deleted)`, `(\Seen \dElEtEd)`, `(\Seen $Deleted)`,
			`(\Deleted[)`, `(\Deleted])`, `(\Deleted})`, `(\Seen \Deleted~)`} {
			c.Steps = append(c.Steps, &Step{
				Label: fmt.Sprintf("APPEND %s %s message", box, flags),
				Cmds:  []Cmd{Build("f1", T(" APPEND "+Quote(g.B.Wire(box))+" "+flags+" "), g.msgLit("f1"))},
			})
		}
	}
	return c
}

// tagCase sends attack D with every printable character in the tag of the
// SELECT that switches away from Legal: if the proxy forwards the tag the
// backend must run that SELECT, else the STORE and EXPUNGE act in Legal.
func (g *Gen) tagCase() *Case {
	q := Quote(g.B.Wire("Legal"))
	v := Quote(g.B.Wire("Victim"))
	c := &Case{Name: `SELECT Legal; <tag> SELECT Victim; STORE 1 +FLAGS.SILENT (\Deleted); EXPUNGE`}
	tags := []string{"+", "*", "a+", "+a", "-", strings.Repeat("t", 64), strings.Repeat("t", 65), strings.Repeat("t", 300), "a\x80b"}
	for _, x := range printable[1:] {
		tags = append(tags, "x"+string(x)+"y", string(x))
	}
	for _, tag := range tags {
		c.Steps = append(c.Steps, &Step{
			Label: fmt.Sprintf("%s [tag %q]", c.Name, tag),
			Cmds: []Cmd{
				{Tag: "g1", Parts: []Part{{Data: []byte("g1 SELECT " + q + "\r\n")}}, Alone: true},
				{Tag: tag, Parts: []Part{{Data: []byte(tag + " SELECT " + v + "\r\n")}}, After: "g1"},
				Line("g3", `STORE 1 +FLAGS.SILENT (\Deleted)`),
				Line("g4", "EXPUNGE"),
			},
		})
	}
	return c
}

// argCase adds arguments to commands that take none (RFC 9051 §6), in
// Victim opened read-write: a CLOSE or EXPUNGE the backend ran with its
// argument ignored would expunge.
func (g *Gen) argCase() *Case {
	v := Quote(g.B.Wire("Victim"))
	c := &Case{Name: "SELECT Victim; <command> <argument>"}
	cmds := []string{"NOOP", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "CAPABILITY", "NAMESPACE", "IDLE", "LOGOUT"}
	args := []seg{T(" x"), T(" (x)"), T(` "x"`), T(" NIL"), T(" 1"), T(" \\Deleted"), T(" "), T("  x")}
	for _, cmd := range cmds {
		for _, a := range args {
			c.Steps = append(c.Steps, &Step{
				Label: fmt.Sprintf("SELECT Victim; %s%s", cmd, a.text),
				Cmds:  []Cmd{Line("p1", "SELECT "+v), Build("p2", T(" "+cmd), a)},
			})
		}
		c.Steps = append(c.Steps, &Step{
			Label: fmt.Sprintf("SELECT Victim; %s {1}x", cmd),
			Cmds:  []Cmd{Line("p1", "SELECT "+v), Build("p2", T(" "+cmd+" "), L("x", litSync))},
		})
	}
	return c
}

// spaceCase writes commands with a space too many or too few (RFC 9051
// §9: exactly one SP between arguments, none after "(" or before ")").
func (g *Gen) spaceCase() *Case {
	k := Quote(g.B.Wire("Keep"))
	v := Quote(g.B.Wire("Victim"))
	l := Quote(g.B.Wire("Legal"))
	c := &Case{Name: "extra and missing spaces"}
	lines := [][]string{
		{"STATUS  " + k + " (MESSAGES)"}, {"STATUS " + k + "  (MESSAGES)"}, {"STATUS " + k + " ( MESSAGES)"},
		{"STATUS " + k + " (MESSAGES )"}, {"STATUS " + k + " (MESSAGES  UIDNEXT)"}, {"STATUS " + k + "(MESSAGES)"},
		{"STATUS " + k + " (MESSAGES) "}, {"DELETE  " + v}, {"DELETE " + v + " "}, {"RENAME " + v + "  " + k},
		{"RENAME " + v + k}, {"CREATE " + k + " "}, {"SELECT  " + l, `STORE 1 +FLAGS.SILENT (\Deleted)`, "EXPUNGE"},
		{"SELECT " + l + " ", `STORE 1 +FLAGS.SILENT (\Deleted)`, "EXPUNGE"},
		{"SELECT " + v, `STORE 1  +FLAGS (\Deleted)`}, {"SELECT " + v, `STORE 1 +FLAGS  (\Deleted)`},
		{"SELECT " + v, `STORE 1 +FLAGS (\Deleted )`}, {"SELECT " + v, `STORE 1 +FLAGS ( \Deleted)`},
		{"SELECT " + v, `STORE 1 +FLAGS(\Deleted)`}, {"SELECT " + v, `STORE  1 +FLAGS (\Deleted)`},
		{"SELECT " + v, "FETCH 1 (FLAGS )"}, {"SELECT " + v, "COPY 1  " + k}, {"SELECT " + v, "UID  FETCH 1 FLAGS"},
		{"SELECT " + v, "EXPUNGE "}, {"SELECT " + v, "CLOSE "}, {"SELECT " + v, " CLOSE"},
		{"SELECT\t" + v}, {"SUBSCRIBE  " + k}, {"LIST  \"\" *"}, {"LIST \"\"  *"},
	}
	for _, ls := range lines {
		st := &Step{Label: strings.Join(ls, "; ")}
		for i, l := range ls {
			tag := fmt.Sprintf("w%d", i+1)
			st.Cmds = append(st.Cmds, Cmd{Tag: tag, Parts: []Part{{Data: []byte(tag + " " + l + "\r\n")}}})
		}
		c.Steps = append(c.Steps, st)
	}
	// Leading and doubled spaces before the command name.
	for _, raw := range []string{"w1  NOOP", " w1 NOOP", "w1 UID  EXPUNGE 1", "w1 NOOP\t"} {
		c.Steps = append(c.Steps, &Step{Label: fmt.Sprintf("%q", raw), Cmds: []Cmd{{Tag: "w1", Parts: []Part{{Data: []byte(raw + "\r\n")}}}}})
	}
	return c
}

// pipelineCase pipelines state changes: two SELECTs, then STORE \Deleted
// and EXPUNGE, in one write; and issue 11's attack C, where STORE and
// EXPUNGE leave as soon as the first SELECT's OK is seen, in every
// interleaving of the writes.
func (g *Gen) pipelineCase() *Case {
	c := &Case{Name: "pipelined SELECT/EXAMINE; SELECT/EXAMINE; STORE; EXPUNGE"}
	boxes := []string{"INBOX", "Legal", "Victim", "Keep", "Nonexistent"}
	name := func(b string) string { return Quote(g.B.Wire(b)) }
	for _, a := range boxes {
		for _, b2 := range boxes {
			if a == b2 {
				continue
			}
			for _, verb := range []string{"SELECT", "EXAMINE"} {
				c.Steps = append(c.Steps, &Step{
					Label: fmt.Sprintf("one write: SELECT %s; %s %s; STORE 1:* +FLAGS.SILENT (\\Deleted); EXPUNGE", a, verb, b2),
					Cmds: []Cmd{Line("p1", "SELECT "+name(a)), Line("p2", verb+" "+name(b2)),
						Line("p3", `STORE 1:* +FLAGS.SILENT (\Deleted)`), Line("p4", "EXPUNGE")},
				})
			}
		}
	}
	pairs := [][2]string{{"INBOX", "Legal"}, {"Legal", "INBOX"}, {"Victim", "Legal"}, {"Legal", "Victim"}, {"Legal", "Nonexistent"}}
	for _, p := range pairs {
		a, b2 := name(p[0]), name(p[1])
		slow := "FETCH 1:* (BODY.PEEK[] FLAGS)"
		plans := map[string][]Cmd{
			"all in one write": {Line("a", "SELECT "+a), Line("n1", slow), Line("n2", "NOOP"), Line("b", "SELECT "+b2),
				Line("c", `STORE 1:* +FLAGS.SILENT (\Deleted)`), Line("d", "EXPUNGE")},
			"STORE and EXPUNGE once a completed": {Line("a", "SELECT "+a), Line("n1", slow), Line("n2", "NOOP"), withAlone(Line("b", "SELECT "+b2)),
				withAfter(Line("c", `STORE 1:* +FLAGS.SILENT (\Deleted)`), "a"), Line("d", "EXPUNGE")},
			"b once a completed, STORE at once": {withAlone(Line("a", "SELECT "+a)), withAfter(Line("b", "SELECT "+b2), "a"),
				Line("c", `STORE 1:* +FLAGS.SILENT (\Deleted)`), Line("d", "EXPUNGE")},
			"each once the one before completed": {withAlone(Line("a", "SELECT "+a)), withAlone(withAfter(Line("b", "SELECT "+b2), "a")),
				withAlone(withAfter(Line("c", `STORE 1:* +FLAGS.SILENT (\Deleted)`), "b")), withAfter(Line("d", "EXPUNGE"), "c")},
		}
		for _, plan := range []string{"all in one write", "STORE and EXPUNGE once a completed", "b once a completed, STORE at once", "each once the one before completed"} {
			c.Steps = append(c.Steps, &Step{
				Label: fmt.Sprintf("attack C: SELECT %s; slow; SELECT %s; STORE; EXPUNGE (%s)", p[0], p[1], plan),
				Cmds:  plans[plan],
			})
		}
	}
	return c
}

func withAlone(c Cmd) Cmd             { c.Alone = true; return c }
func withAfter(c Cmd, tag string) Cmd { c.After = tag; return c }

// closeCase: CLOSE after SELECT expunges, after EXAMINE it does not (RFC
// 9051 §6.4.1); every way to leave a mailbox.
func (g *Gen) closeCase() *Case {
	c := &Case{Name: "SELECT/EXAMINE <box>; <leave>"}
	for _, verb := range []string{"SELECT", "EXAMINE"} {
		for _, box := range []string{"Legal", "Victim", "Keep"} {
			for _, leave := range []string{"CLOSE", "UNSELECT", "SELECT INBOX", "EXAMINE INBOX", "LOGOUT"} {
				c.Steps = append(c.Steps, &Step{
					Label: fmt.Sprintf("%s %s; %s", verb, box, leave),
					Cmds:  []Cmd{Line("o1", verb+" "+Quote(g.B.Wire(box))), Line("o2", leave)},
				})
			}
		}
	}
	return c
}

// paramsCase writes the optional parameter lists of SELECT, EXAMINE and
// the other commands that take one empty, repeated, unbalanced or
// otherwise off the RFCs' grammar: "EXAMINE Keep ()" was opened by
// Dovecot, refused BAD by Cyrus, which kept Victim selected read-write,
// and NO by Courier, which deselected. The STORE \Deleted and EXPUNGE
// after it show which mailbox the backend really had selected.
func (g *Gen) paramsCase() *Case {
	k, v := Quote(g.B.Wire("Keep")), Quote(g.B.Wire("Victim"))
	c := &Case{Name: "optional parameter lists"}
	for _, verb := range []string{"SELECT", "EXAMINE"} {
		for _, params := range []string{"()", "(CONDSTORE)", "(CONDSTORE CONDSTORE)", "(condstore)", "(FOO)", "( CONDSTORE)",
			"(CONDSTORE ())", "(QRESYNC (1 1))", "(QRESYNC (1 1) QRESYNC (1 1))", "(QRESYNC (1 1) CONDSTORE)",
			"(QRESYNC (1 1 1:3 (1:3 1:2)))", "(QRESYNC (1 1 1:* (1:3 1:3)))", "(QRESYNC (1 0))", "(QRESYNC ())", "(QRESYNC)"} {
			cmds := []Cmd{Line("q1", "SELECT "+v), Line("q2", verb+" "+k+" "+params), Line("q3", `STORE 1 +FLAGS.SILENT (\Deleted)`), Line("q4", "EXPUNGE")}
			if strings.Contains(params, "QRESYNC") {
				cmds = append([]Cmd{Line("q0", "ENABLE QRESYNC")}, cmds...)
			}
			c.Steps = append(c.Steps, &Step{Label: fmt.Sprintf("SELECT Victim; %s Keep %s; STORE 1 \\Deleted; EXPUNGE", verb, params), Cmds: cmds})
		}
	}
	for _, l := range []string{"FETCH 1 (FLAGS) ()", "FETCH 1 (FLAGS) (CHANGEDSINCE 1 CHANGEDSINCE 5)", "FETCH 1 BODY.PEEK[] ()",
		`STORE 1 () +FLAGS.SILENT (\Deleted)`, `STORE 1 (UNCHANGEDSINCE 5 UNCHANGEDSINCE 1) +FLAGS.SILENT (\Deleted)`,
		"SEARCH RETURN () ALL", "SEARCH ()", "SORT () UTF-8 ALL", "STATUS " + k + " ()", `LIST () "" *`, `LIST "" * RETURN ()`,
		`LIST "" * RETURN (STATUS (MESSAGES) STATUS (UIDNEXT))`, `GETMETADATA () "" /shared/comment`,
		`GETMETADATA (MAXSIZE 1 MAXSIZE 100) "" /shared/comment`, "CREATE " + Quote(g.B.Wire("New")) + " (USE ())",
		"NOTIFY SET (SELECTED ())", "ENABLE", "UNSELECT ()"} {
		c.Steps = append(c.Steps, &Step{
			Label: "SELECT Victim; " + l + "; EXPUNGE",
			Cmds:  []Cmd{Line("q1", "SELECT "+v), Line("q2", l), Line("q3", "EXPUNGE")},
		})
	}
	c.Steps = append(c.Steps, &Step{
		Label: "SELECT Victim; APPEND Keep () message; EXPUNGE",
		Cmds:  []Cmd{Line("q1", "SELECT "+v), one("q2", "APPEND", quotedSp(g.B.Wire("Keep")), T(" () "), g.msgLit("q2")), Line("q3", "EXPUNGE")},
	})
	return c
}

// readOnlyCase: a read-only user (policies/readonly) changes nothing,
// whatever the command (issue 11: SUBSCRIBE got through).
func (g *Gen) readOnlyCase() *Case {
	k, v := Quote(g.B.Wire("Keep")), Quote(g.B.Wire("Victim"))
	c := &Case{Name: "read-only user"}
	steps := [][]Cmd{
		{Line("r1", "CREATE "+Quote(g.B.Wire("RoNew")))}, {Line("r1", "DELETE "+v)}, {Line("r1", "RENAME "+v+" "+k)},
		{Line("r1", "SUBSCRIBE "+k)}, {Line("r1", "UNSUBSCRIBE "+k)}, {Line("r1", "SUBSCRIBE INBOX")},
		{one("r1", "APPEND", quotedSp(g.B.Wire("Keep")), T(" "), g.msgLit("r1"))},
		{Line("r1", "SELECT "+k)}, {Line("r1", "EXAMINE "+k), Line("r2", `STORE 1 +FLAGS (\Flagged)`)},
		{Line("r1", "EXAMINE "+k), Line("r2", "FETCH 1 BODY[]")}, {Line("r1", "EXAMINE "+k), Line("r2", "EXPUNGE")},
		{Line("r1", "EXAMINE "+k), Line("r2", "CLOSE")}, {Line("r1", "EXAMINE "+k), Line("r2", "COPY 1 "+v)},
		{Line("r1", "EXAMINE "+k), Line("r2", "MOVE 1 "+v)}, {Line("r1", "EXAMINE "+v), Line("r2", "UID EXPUNGE 1:*")},
	}
	for _, cmds := range steps {
		var l []string
		for _, cm := range cmds {
			l = append(l, strings.TrimSpace(strings.SplitN(string(cm.Parts[0].Data), " ", 2)[1]))
		}
		c.Steps = append(c.Steps, &Step{Label: "rouser: " + strings.Join(l, "; "), User: "rouser", Cmds: cmds})
	}
	return c
}

// catenateCase: CATENATE URL parts (RFC 4469) create messages in the
// audited mailbox; under an APPEND limit they are refused.
func (g *Gen) catenateCase() *Case {
	c := &Case{Name: "APPEND CATENATE"}
	inbox := g.B.Wire("INBOX")
	legal := g.B.Wire("Legal")
	for _, user := range []string{"alice", "small"} {
		for _, u := range []string{"/" + inbox + "/;UID=1", "/" + legal + "/;UID=1", "/" + inbox + "/;UID=1/;SECTION=TEXT"} {
			for _, box := range []string{"Keep", "Legal"} {
				c.Steps = append(c.Steps, &Step{
					Label: fmt.Sprintf("%s: APPEND %s CATENATE (URL %q)", user, box, u), User: user,
					Cmds: []Cmd{Line("n1", fmt.Sprintf("APPEND %s CATENATE (URL %s)", Quote(g.B.Wire(box)), Quote(u)))},
				})
			}
		}
		c.Steps = append(c.Steps, &Step{
			Label: user + ": APPEND Keep CATENATE (TEXT {n} URL ...)", User: user,
			Cmds: []Cmd{Build("n1", T(" APPEND "+Quote(g.B.Wire("Keep"))+" CATENATE (TEXT "), g.msgLit("n1"), T(" URL "+Quote("/"+inbox+"/;UID=1")+")"))},
		})
	}
	return c
}

// notifyCase: NOTIFY (RFC 5465) pushes bodies of new mail; every pushed
// octet must be counted and audited. (MessageNew goes with
// MessageExpunge, RFC 5465 §5, or Dovecot refuses the NOTIFY.)
func (g *Gen) notifyCase() *Case {
	c := &Case{Name: "NOTIFY pushes"}
	keep := g.B.Wire("Keep")
	keepC := g.B.Canonical("Keep")
	for _, items := range []string{"(UID BODY.PEEK[])", "(BODY[])", "(UID BINARY.PEEK[])", "(UID BODY.PEEK[TEXT] PREVIEW)", "(UID SNIPPET (LAZY=FUZZY))", "(FLAGS)"} {
		for _, wait := range []string{"IDLE", "NOOP"} {
			st := &Step{
				Label:  fmt.Sprintf("SELECT Keep; NOTIFY SET (selected (MessageNew %s MessageExpunge)); %s while mail arrives", items, wait),
				Adds:   []string{keepC},
				Logout: true,
			}
			deliver := func(e *Env) error {
				return e.B.Append(e.Direct(e.Main), keep, "", Message("pushed", 700))
			}
			st.Cmds = []Cmd{
				Line("y1", "SELECT "+Quote(keep)),
				withAlone(Line("y2", "NOTIFY SET (selected (MessageNew "+items+" MessageExpunge))")),
			}
			pushed := func(r *Resp) bool { return isFetch(r) || strings.HasSuffix(r.Text, "EXISTS") }
			if wait == "IDLE" {
				st.Cmds = append(st.Cmds, Cmd{Tag: "y3", After: "y2", Parts: []Part{
					{Data: []byte("y3 IDLE\r\n"), Cont: true, Do: deliver, Until: pushed},
					{Data: []byte("DONE\r\n")},
				}})
			} else {
				st.Cmds = append(st.Cmds, Cmd{Tag: "y3", After: "y2", Parts: []Part{{Do: deliver}, {Data: []byte("y3 NOOP\r\n")}}})
			}
			c.Steps = append(c.Steps, st)
		}
	}
	return c
}
