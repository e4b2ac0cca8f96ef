package audit

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"
)

// BreakKind classifies the first broken link of a chain.
type BreakKind string

const (
	// BreakEdited: a record does not hash to what the next one stored,
	// or a chain's first record does not start from zero: a record was
	// changed, or replaced.
	BreakEdited BreakKind = "edited"
	// BreakRemoved: seq jumps forward: records (or a whole rotated
	// file) are missing.
	BreakRemoved BreakKind = "removed"
	// BreakReordered: seq goes back: records were moved or copied.
	BreakReordered BreakKind = "reordered"
	// BreakCorrupt: a line that should be a record is not one.
	BreakCorrupt BreakKind = "corrupt"
	// BreakKey: a record's signature matches none of the keys given, it
	// has none, or a key was given and a record is chained without it:
	// no key given signed it.
	BreakKey BreakKind = "key"
	// BreakTruncated: the last line is incomplete, as when the writer is
	// killed in the middle of a write: truncation, not tampering. The
	// records before it are intact.
	BreakTruncated BreakKind = "truncated"
	// BreakShort: the trail ends before the record a checkpoint says was
	// written: records at the end were removed (or the newest files were
	// not given).
	BreakShort BreakKind = "short"
	// BreakUnlinked: the files given do not hold the record a checkpoint
	// signed (they start after it): nothing links them to it. The trail
	// was replaced, or the file holding that record was not given.
	BreakUnlinked BreakKind = "unlinked"
)

// ErrKeyRequired is returned by Verify for HMAC-chained records when no
// key was given.
var ErrKeyRequired = errors.New("audit: the records are chained with HMAC-SHA256: give the key")

// Break is the first broken link found.
type Break struct {
	Kind BreakKind
	File string
	Line int    // 1-based
	Seq  uint64 // of the record at File:Line, 0 when unknown
	Msg  string
}

func (b *Break) String() string {
	s := b.File
	if b.Line != 0 {
		s += fmt.Sprintf(":%d", b.Line)
	}
	if b.Seq != 0 {
		s += fmt.Sprintf(" (seq %d)", b.Seq)
	}
	return s + ": " + string(b.Kind) + ": " + b.Msg
}

// FileInfo summarises one verified file.
type FileInfo struct {
	Name              string
	Records           int
	FirstSeq, LastSeq uint64
}

// Report is what Verify found.
type Report struct {
	Files             []FileInfo // in chain order
	Records           int
	FirstSeq, LastSeq uint64
	Chains            []string // algorithms seen: ChainSHA256, ChainHMACSHA256
	Notes             []string // facts an auditor should know that break nothing
	Break             *Break   // the first broken link, nil when the chain is intact
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys are the HMAC keys the trail may have used (several across a
	// key change), oldest first. With keys, every record must be signed
	// by one of them and every link must be an HMAC one; a chain signed
	// with a key older than that of an earlier chain is a break: the
	// order retires a key (a writer given the new key never goes back).
	Keys [][]byte
	// Checkpoint, when set, must be matched: the record at its seq must
	// be among the files and hash to its link (ReadCheckpoint).
	Checkpoint *Checkpoint
}

// Verify checks the chain of records across files, which may be given in
// any order: they are put in chain order by the seq of their first
// record. It stops at the first broken link. Lines that are not records
// and do not start with "{" (other programs' lines in a syslog file) are
// skipped and counted in a note. The error is for I/O problems and
// ErrKeyRequired; a broken chain is Report.Break.
func Verify(files []string, o VerifyOptions) (*Report, error) {
	ordered, err := chainOrder(files)
	if err != nil {
		return nil, err
	}
	v := &verifier{rep: &Report{}, recent: make(map[uint64]recentRecord), cp: o.Checkpoint}
	for _, k := range o.Keys {
		v.macs = append(v.macs, hmac.New(sha256.New, k))
	}
	for i, name := range ordered {
		if err := v.file(name, i == len(ordered)-1); err != nil {
			return nil, err
		}
		if v.rep.Break != nil {
			if v.cpMiss != nil { // the earlier break
				v.rep.Break = v.cpMiss
				return v.rep, nil
			}
			// A torn line before the checkpoint's record: more than
			// one interrupted write is missing.
			if v.rep.Break.Kind == BreakTruncated && v.short(ordered) {
				return v.rep, nil
			}
			if b := v.rep.Break; b.Kind == BreakRemoved {
				// A record that is further on was moved, not removed.
				if f, l, ok := findSeq(ordered, v.prevSeq+1); ok {
					b.Kind = BreakReordered
					b.Msg = fmt.Sprintf("seq %d comes after seq %d; seq %d is at %s:%d: records were moved", b.Seq, v.prevSeq, v.prevSeq+1, f, l)
				}
			}
			return v.rep, nil
		}
	}
	if v.foreign > 0 {
		v.note("%d lines that are not records were skipped", v.foreign)
	}
	if v.cpMiss != nil {
		v.rep.Break = v.cpMiss
		return v.rep, nil
	}
	if v.short(ordered) {
		return v.rep, nil
	}
	if cp := v.cp; cp != nil && !v.cpSeen {
		// The first record's link is checked against nothing: only the
		// checkpoint's record ties these files to the trail it signed.
		v.brk(BreakUnlinked, ordered[0], 0, v.rep.FirstSeq, fmt.Sprintf("the files given start at seq %d, after the record the checkpoint of %s signed (seq %d): nothing links them to it; the trail was replaced, or the file holding seq %d was not given",
			v.rep.FirstSeq, cp.Time.UTC().Format(time.RFC3339), cp.Seq, cp.Seq))
		return v.rep, nil
	}
	if v.have && v.lastKind != KindAuditStop {
		v.note("the chain ends at seq %d without an audit.stop record: the writer is still running, was killed, or the newest records are not among the files given", v.rep.LastSeq)
	}
	return v.rep, nil
}

type verifier struct {
	rep  *Report
	macs []hash.Hash
	// chainKey is the index of the key that signed the current chain's
	// first record: a writer never changes key within a chain (it
	// resumes only from a record its key signed), so every later record
	// of the chain must be signed by it.
	chainKey int
	// newestKey is the newest key (by its place in Keys) that signed a
	// chain so far: a later chain signed with an older one was written
	// by a holder of a retired key.
	newestKey int
	macSeen   bool // a record's signature was verified
	have      bool // a record was seen
	prevSum   [sha256.Size]byte
	// link is the previous record's link: the SHA-256 of its line, or
	// its sig, hex; what the next record must store as prev or hmac.
	link    [2 * sha256.Size]byte
	prevSeq uint64
	// prevAt is where the previous record is, for messages.
	prevFile string
	prevLine int
	lastKind Kind
	foreign  int
	// recent maps the seq of recent records to their hash, to recognise
	// a record sent twice (a syslog retry) rather than a reordering, and
	// to their link, to recognise a restart from a checkpoint.
	recent map[uint64]recentRecord
	// cpMiss is a record at the checkpoint's seq that is not the one it
	// signed: the break, unless a restart from an older checkpoint
	// superseded it and the record of the newer run matches.
	cpMiss *Break
	hexBuf [2 * sha256.Size]byte
	cp     *Checkpoint
	cpSeen bool              // the record at cp.Seq was found and matched
	sig    [sha256.Size]byte // scratch for signed
}

type recentRecord struct {
	sum  [sha256.Size]byte
	link [2 * sha256.Size]byte
}

func (v *verifier) note(format string, args ...any) {
	v.rep.Notes = append(v.rep.Notes, fmt.Sprintf(format, args...))
}

// recordHead is what verify reads of a record.
type recordHead struct {
	TS   string `json:"ts"`
	Kind Kind   `json:"kind"`
	V    int    `json:"v"`
	Seq  uint64 `json:"seq"`
	Prev string `json:"prev"`
	HMAC string `json:"hmac"`
}

// parseHead reads the head of a record and returns why it is not one, or
// "". The writer's fixed prefix ({"ts":"…","kind":"…","v":N,"seq":N,
// "prev":"…") is read directly, which is several times faster than
// decoding; anything else goes through encoding/json. Either way the
// whole line must be valid JSON without a key twice: the fast head reads
// the first of two, encoding/json (audit query) the last, and a record
// must have one reading (dupKey).
func parseHead(rec []byte, h *recordHead) string {
	*h = recordHead{}
	if !fastHead(rec, h) {
		*h = recordHead{}
		if json.Unmarshal(rec, h) != nil || h.V == 0 || h.Kind == "" {
			return "not a valid record: it was edited or damaged"
		}
	} else if !json.Valid(rec) {
		return "not a valid record: it was edited or damaged"
	}
	if k, dup := dupKey(rec); dup {
		return fmt.Sprintf("the key %q is there twice, which readers read differently: the writer never writes that; it was forged or edited", k)
	}
	return ""
}

func fastHead(b []byte, h *recordHead) bool {
	var ok bool
	str := func(key string) string {
		if !ok || !bytes.HasPrefix(b, []byte(key)) {
			ok = false
			return ""
		}
		b = b[len(key):]
		i := bytes.IndexByte(b, '"')
		if i < 0 || bytes.IndexByte(b[:i], '\\') >= 0 {
			ok = false
			return ""
		}
		v := string(b[:i])
		b = b[i+1:]
		return v
	}
	num := func(key string) uint64 {
		if !ok || !bytes.HasPrefix(b, []byte(key)) {
			ok = false
			return 0
		}
		b = b[len(key):]
		var n uint64
		i := 0
		for ; i < len(b) && i < 20 && b[i] >= '0' && b[i] <= '9'; i++ {
			n = n*10 + uint64(b[i]-'0')
		}
		if i == 0 || i == 20 || (i > 1 && b[0] == '0') {
			ok = false
		}
		b = b[i:]
		return n
	}
	ok = true
	h.TS = str(`{"ts":"`)
	h.Kind = Kind(str(`,"kind":"`))
	h.V = int(num(`,"v":`))
	h.Seq = num(`,"seq":`)
	if bytes.HasPrefix(b, []byte(`,"prev":"`)) {
		h.Prev = str(`,"prev":"`)
	} else {
		h.HMAC = str(`,"hmac":"`)
	}
	return ok && h.V != 0 && h.Kind != "" && h.V < 1000
}

// recordStart returns the record in a line: the line itself, or, for a
// line with a prefix (a syslog header), the part from the first
// `{"ts":`. Nil when there is none.
func recordStart(line []byte) []byte {
	if len(line) > 0 && line[0] == '{' {
		return line
	}
	if i := bytes.Index(line, []byte(`{"ts":"`)); i >= 0 {
		return line[i:]
	}
	return nil
}

func (v *verifier) file(name string, last bool) error {
	f, err := os.Open(name)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	info := FileInfo{Name: name}
	br := bufio.NewReaderSize(f, 256<<10)
	for n := 1; ; n++ {
		line, complete, err := readLine(br)
		if err != nil {
			return fmt.Errorf("audit: read %s: %w", name, err)
		}
		if line == nil {
			break
		}
		if !complete {
			v.torn(name, n, line, last)
			break
		}
		rec := recordStart(line)
		if rec == nil {
			v.foreign++
			continue
		}
		var h recordHead
		if why := parseHead(rec, &h); why != "" {
			v.brk(BreakCorrupt, name, n, h.Seq, why)
			break
		}
		if ok, err := v.record(name, n, rec, &h); err != nil {
			return err
		} else if !ok {
			continue // a duplicate
		}
		if v.rep.Break != nil {
			break
		}
		if info.Records == 0 {
			info.FirstSeq = h.Seq
		}
		info.Records++
		info.LastSeq = h.Seq
	}
	if info.Records > 0 {
		v.rep.Files = append(v.rep.Files, info)
	}
	return nil
}

// readLine reads one line; complete is false for a last line without
// "\n". It returns a nil line at the end.
func readLine(br *bufio.Reader) (line []byte, complete bool, err error) {
	l, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		buf := bytes.Clone(l)
		for err == bufio.ErrBufferFull {
			l, err = br.ReadSlice('\n')
			buf = append(buf, l...)
			if len(buf) > maxRecordLen {
				return buf, false, nil
			}
		}
		l = buf
	}
	switch {
	case err == io.EOF && len(l) == 0:
		return nil, false, nil
	case err == io.EOF:
		return l, false, nil
	case err != nil:
		return nil, false, err
	}
	return l[:len(l)-1], true, nil
}

func (v *verifier) torn(name string, n int, line []byte, last bool) {
	what := "an incomplete last line"
	if len(bytes.Trim(line, "\x00")) == 0 {
		what = "zero bytes at the end (a crashed machine)"
	}
	if !last {
		v.brk(BreakCorrupt, name, n, 0, fmt.Sprintf("%s ends with %s, but the chain goes on in the next file", name, what))
		return
	}
	v.brk(BreakTruncated, name, n, 0, fmt.Sprintf("%s (%d bytes): the writer stopped in the middle of a write; the %d records before it are intact",
		what, len(line), v.rep.Records))
}

func (v *verifier) brk(k BreakKind, file string, line int, seq uint64, msg string) {
	v.rep.Break = &Break{Kind: k, File: file, Line: line, Seq: seq, Msg: msg}
}

// record checks one record against the previous one. It returns false
// for a duplicate, which is skipped.
func (v *verifier) record(file string, n int, rec []byte, h *recordHead) (bool, error) {
	alg := ChainSHA256
	got := h.Prev
	if h.HMAC != "" {
		alg, got = ChainHMACSHA256, h.HMAC
		if len(v.macs) == 0 {
			return false, fmt.Errorf("%w (%s:%d)", ErrKeyRequired, file, n)
		}
	} else if len(v.macs) > 0 {
		v.brk(BreakKey, file, n, h.Seq, "the record is chained with plain SHA-256 although a key was given: it was not written by a trail holding that key")
		return true, nil
	}
	if got == "" {
		v.brk(BreakCorrupt, file, n, h.Seq, "the record has neither prev nor hmac")
		return true, nil
	}
	var link [2 * sha256.Size]byte
	sum := sha256.Sum256(rec)
	if alg == ChainHMACSHA256 {
		// Every record of a keyed trail must be signed by a key given,
		// before its seq or links mean anything (ARCHITECTURE.md §11).
		body, sig := splitSig(rec)
		if body == nil {
			v.brk(BreakKey, file, n, h.Seq, "the record carries no signature (sig): no key signed it; it was forged or edited")
			return true, nil
		}
		// A chain starts at the first record read or at a new chain's
		// audit.start; any key given may sign that record, and only
		// that key the rest of its chain (a retired key must not sign
		// over the current chain, ARCHITECTURE.md §11).
		starts := !v.have || (h.Seq == 1 && got == string(genesis) && h.Kind == KindAuditStart)
		k := v.signedBy(body, sig)
		switch {
		case k < 0 && v.macSeen:
			v.brk(BreakEdited, file, n, h.Seq, "the record's signature does not match it: it was changed after it was written, or forged")
			return true, nil
		case k < 0:
			v.brk(BreakKey, file, n, h.Seq, "the record's signature matches none of the keys given: wrong key, or the record was forged")
			return true, nil
		case starts && k < v.newestKey:
			v.brk(BreakKey, file, n, h.Seq, fmt.Sprintf("a chain starts here signed with key %d given, after a chain signed with key %d: keys are given oldest first, and a writer never goes back to a retired key, so a holder of the retired key wrote this chain; it was forged",
				k+1, v.newestKey+1))
			return true, nil
		case starts:
			v.chainKey, v.newestKey = k, k
		case k != v.chainKey:
			v.brk(BreakKey, file, n, h.Seq, fmt.Sprintf("the record is signed with key %d given, but its chain with key %d: a writer never changes key within a chain (a key change starts a new chain, seq 1), so another key holder signed it; it was forged or edited",
				k+1, v.chainKey+1))
			return true, nil
		}
		v.macSeen = true
		copy(link[:], sig)
	} else {
		hex.Encode(link[:], sum[:])
	}
	if !slices.Contains(v.rep.Chains, alg) {
		v.rep.Chains = append(v.rep.Chains, alg)
	}
	isGenesis := got == string(genesis)
	switch {
	case !v.have:
		if h.Seq == 1 && !isGenesis {
			v.brk(BreakEdited, file, n, h.Seq, "the first record of the chain does not start from zero")
			return true, nil
		}
		if h.Seq != 1 {
			v.note("the chain starts at seq %d (%s:%d): the records before it are not among the files given", h.Seq, file, n)
		}
		v.rep.FirstSeq = h.Seq
	case h.Seq == v.prevSeq+1:
		if !hmac.Equal(v.link[:], []byte(got)) {
			what := "hash"
			if alg == ChainHMACSHA256 {
				what = "signature"
			}
			v.brk(BreakEdited, file, n, h.Seq, fmt.Sprintf("the previous record (%s:%d, seq %d) was changed after it was written: its %s no longer matches the one stored here (or this record's %s was altered)",
				v.prevFile, v.prevLine, v.prevSeq, what, map[string]string{ChainSHA256: "prev", ChainHMACSHA256: "hmac"}[alg]))
			return true, nil
		}
	case h.Seq == 1 && isGenesis && h.Kind == KindAuditStart:
		if v.cpSeen {
			// A writer with a checkpoint continues its chain, or refuses
			// to start (checkResume): it never starts a new one.
			v.brk(BreakUnlinked, file, n, h.Seq, fmt.Sprintf("a new chain starts after the record the checkpoint signed (seq %d): a writer keeping checkpoints never starts one; this record was copied here", v.cp.Seq))
			return true, nil
		}
		if alg == ChainHMACSHA256 {
			v.note("a new chain starts at %s:%d, signed with the key: the writer started without the previous records (a stdout or syslog sink, or the files were moved); nothing links it to the records before it, so records between them may be missing", file, n)
		} else {
			v.note("a new chain starts at %s:%d: the writer started without the previous records (a stdout or syslog sink, or the files were moved); without a key, anyone who can write to the trail (for syslog, any local user) can start one", file, n)
		}
		clear(v.recent)
	case h.Seq <= v.prevSeq && v.isDuplicate(h.Seq, &sum):
		v.note("%s:%d repeats record seq %d (sent twice); skipped", file, n, h.Seq)
		return false, nil
	case h.Seq <= v.prevSeq && h.Seq > 1 && alg == ChainHMACSHA256 && h.Kind == KindAuditStart && v.linksTo(h.Seq-1, got) && resumedAt(rec) == h.Seq-1:
		// A writer whose sink cannot read back (stdout, syslog) resumes
		// from its checkpoint (checkResume) and says so, signed: after a
		// crash, the records written after that checkpoint end the
		// previous run. A file trail's writer never forks: its
		// audit.start says no such thing.
		v.note("%s:%d: the writer restarted from its checkpoint at seq %d, signed and linked to it: seq %d to %d before it were written after that checkpoint by a run that did not stop cleanly",
			file, n, h.Seq-1, h.Seq, v.prevSeq)
		for s := range v.recent {
			if s >= h.Seq {
				delete(v.recent, s)
			}
		}
	case h.Seq > v.prevSeq+1:
		where := ""
		if file != v.prevFile {
			where = fmt.Sprintf(" between %s and %s (is a rotated file missing?)", v.prevFile, file)
		}
		v.brk(BreakRemoved, file, n, h.Seq, fmt.Sprintf("seq jumps from %d to %d: %d records are missing%s", v.prevSeq, h.Seq, h.Seq-v.prevSeq-1, where))
		return true, nil
	default:
		v.brk(BreakReordered, file, n, h.Seq, fmt.Sprintf("seq %d comes after seq %d (%s:%d): records were moved or copied", h.Seq, v.prevSeq, v.prevFile, v.prevLine))
		return true, nil
	}
	v.have = true
	v.link = link
	v.prevSum = sum
	v.prevSeq, v.prevFile, v.prevLine, v.lastKind = h.Seq, file, n, h.Kind
	v.rep.Records++
	v.rep.LastSeq = h.Seq
	v.recent[h.Seq] = recentRecord{sum: sum, link: link}
	if h.Seq > 4096 {
		delete(v.recent, h.Seq-4096)
	}
	if v.cp != nil && h.Seq == v.cp.Seq && !v.cpSeen {
		if !v.matchesCheckpoint() {
			if v.cpMiss == nil {
				v.cpMiss = &Break{Kind: BreakEdited, File: file, Line: n, Seq: h.Seq,
					Msg: fmt.Sprintf("this record is not the one the checkpoint of %s signed for seq %d: it was replaced", v.cp.Time.UTC().Format(time.RFC3339), h.Seq)}
			}
			return true, nil
		}
		v.cpSeen, v.cpMiss = true, nil
	}
	return true, nil
}

// short reports (as the break) a trail that ends before the checkpoint's
// record.
func (v *verifier) short(ordered []string) bool {
	cp := v.cp
	if cp == nil || v.cpSeen || (v.have && v.rep.LastSeq >= cp.Seq) {
		return false
	}
	last := ""
	if n := len(ordered); n > 0 {
		last = ordered[n-1]
	}
	v.brk(BreakShort, last, 0, v.rep.LastSeq, fmt.Sprintf("the trail ends at seq %d, but the checkpoint of %s says seq %d was written: %d records at the end are missing",
		v.rep.LastSeq, cp.Time.UTC().Format(time.RFC3339), cp.Seq, cp.Seq-v.rep.LastSeq))
	return true
}

// matchesCheckpoint reports whether the record just taken (v.link) has
// the checkpoint's link.
func (v *verifier) matchesCheckpoint() bool {
	return hmac.Equal(v.link[:], []byte(v.cp.Link))
}

// signedBy returns the index of the key whose HMAC of body is sig, or
// -1: the chain's key first (the common case), then the others, which
// start a chain or name the wrong key in a break.
func (v *verifier) signedBy(body, sig []byte) int {
	for i := range v.macs {
		k := (v.chainKey + i) % len(v.macs)
		m := v.macs[k]
		m.Reset()
		m.Write(body)
		hex.Encode(v.hexBuf[:], m.Sum(v.sig[:0]))
		if hmac.Equal(v.hexBuf[:], sig) {
			return k
		}
	}
	return -1
}

func (v *verifier) isDuplicate(seq uint64, sum *[sha256.Size]byte) bool {
	r, ok := v.recent[seq]
	return ok && r.sum == *sum
}

// resumedAt reads an audit.start's resumed_at.
func resumedAt(rec []byte) uint64 {
	var r struct {
		ResumedAt uint64 `json:"resumed_at"`
	}
	json.Unmarshal(rec, &r)
	return r.ResumedAt
}

// linksTo reports whether link is that of the recent record seq.
func (v *verifier) linksTo(seq uint64, link string) bool {
	r, ok := v.recent[seq]
	return ok && hmac.Equal(r.link[:], []byte(link))
}

// findSeq finds the record with seq in files.
func findSeq(files []string, seq uint64) (string, int, bool) {
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		br := bufio.NewReaderSize(f, 256<<10)
		for n := 1; ; n++ {
			line, complete, err := readLine(br)
			if err != nil || line == nil || !complete {
				break
			}
			var h recordHead
			if rec := recordStart(line); rec != nil && parseHead(rec, &h) == "" && h.Seq == seq {
				f.Close()
				return name, n, true
			}
		}
		f.Close()
	}
	return "", 0, false
}

// chainOrder sorts files by the seq of their first record; files without
// a readable first record go last, where the verifier reports them.
func chainOrder(files []string) ([]string, error) {
	type head struct {
		name string
		seq  uint64
	}
	heads := make([]head, 0, len(files))
	for _, name := range files {
		seq, err := firstSeq(name)
		if err != nil {
			return nil, err
		}
		heads = append(heads, head{name, seq})
	}
	slices.SortStableFunc(heads, func(a, b head) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]string, len(heads))
	for i, h := range heads {
		out[i] = h.name
	}
	return out, nil
}

func firstSeq(name string) (uint64, error) {
	f, err := os.Open(name)
	if err != nil {
		return 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 64<<10)
	// Up to the first record, however many foreign lines (a syslog
	// file's other programs) come before it: a fixed bound ordered a
	// busy host's file last.
	for {
		line, complete, err := readLine(br)
		if err != nil {
			return 0, fmt.Errorf("audit: read %s: %w", name, err)
		}
		if line == nil || !complete {
			break
		}
		rec := recordStart(line)
		if rec == nil {
			continue
		}
		var h recordHead
		if parseHead(rec, &h) != "" {
			break
		}
		return h.Seq, nil
	}
	return math.MaxUint64, nil
}

// WriteText writes the report for a person: a verdict line first.
func (r *Report) WriteText(w io.Writer) {
	switch {
	case r.Break == nil:
		fmt.Fprintf(w, "OK: %d records, seq %d to %d, chain intact (%s)\n", r.Records, r.FirstSeq, r.LastSeq, strings.Join(r.Chains, ", "))
	case r.Break.Kind == BreakTruncated:
		fmt.Fprintf(w, "TRUNCATED: %s\n", r.Break)
	case r.Break.Kind == BreakShort:
		fmt.Fprintf(w, "SHORT: %s: %s\n", r.Break.File, r.Break.Msg)
	default:
		fmt.Fprintf(w, "BROKEN: %s\n", r.Break)
	}
	for _, f := range r.Files {
		fmt.Fprintf(w, "  %s: %d records, seq %d to %d\n", f.Name, f.Records, f.FirstSeq, f.LastSeq)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}
