package audit

// The differential test's oracle: the trail's encoding as it was through
// zapcore's JSON encoder, kept as it was so that jsonLine, which replaced
// it, is held to write the same bytes (TestLineMatchesZap). Nothing else
// uses it.

import (
	"bytes"
	"encoding/json"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// encoderConfig was the record format: time and kind first, no level,
// caller or logger name.
var encoderConfig = zapcore.EncoderConfig{
	TimeKey:        "ts",
	MessageKey:     "kind",
	LevelKey:       zapcore.OmitKey,
	NameKey:        zapcore.OmitKey,
	CallerKey:      zapcore.OmitKey,
	FunctionKey:    zapcore.OmitKey,
	StacktraceKey:  zapcore.OmitKey,
	LineEnding:     "\n",
	EncodeTime:     zapcore.TimeEncoderOfLayout(time.RFC3339Nano),
	EncodeDuration: zapcore.NanosDurationEncoder,
	EncodeLevel:    zapcore.LowercaseLevelEncoder,
}

// zapLine is the line the zapcore encoder wrote for r with the chain's
// fields (seq, the link field and prev), under enc's caps, and the link
// to it, as the trail's chainWriter made them.
func zapLine(r *Record, seq uint64, link *linker, prev [64]byte, enc *encoding) ([]byte, [64]byte) {
	w := &zapChainWriter{link: link, prev: prev}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(encoderConfig), zapcore.AddSync(w), zapcore.DebugLevel)
	ch := &zapChained{r: r, seq: seq, field: link.field(), prev: prev, enc: zapEnc{enc}}
	ent := zapcore.Entry{Time: r.Time.UTC(), Message: string(r.Kind), Level: zapcore.InfoLevel}
	if err := core.Write(ent, []zapcore.Field{zap.Inline(ch)}); err != nil {
		panic(err)
	}
	return w.out, w.prev
}

type zapChained struct {
	r     *Record
	seq   uint64
	field string
	prev  [64]byte
	enc   zapEnc
}

func (c *zapChained) MarshalLogObject(e zapcore.ObjectEncoder) error {
	e.AddInt("v", SchemaVersion)
	e.AddUint64("seq", c.seq)
	e.AddByteString(c.field, c.prev[:])
	return zapMarshal(c.r, e, c.enc)
}

type zapChainWriter struct {
	link *linker
	prev [64]byte
	out  []byte
}

func (w *zapChainWriter) Write(p []byte) (int, error) {
	if w.link.mac == nil {
		w.out = append(w.out, p...)
		w.link.link(w.prev[:], p[:len(p)-1])
		return len(p), nil
	}
	body := p[:len(p)-2]
	w.link.link(w.prev[:], body)
	w.out = append(w.out, body...)
	w.out = append(w.out, sigField...)
	w.out = append(w.out, w.prev[:]...)
	w.out = append(w.out, "\"}\n"...)
	return len(p), nil
}

type zapEnc struct{ *encoding }

type zapCut Cut

func (c *zapCut) MarshalLogObject(e zapcore.ObjectEncoder) error {
	e.AddString("field", c.Field)
	e.AddInt("bytes", c.Bytes)
	if c.Items > 0 {
		e.AddInt("items", c.Items)
	}
	return nil
}

type cutList []Cut

func (l cutList) MarshalLogArray(e zapcore.ArrayEncoder) error {
	for i := range l {
		if err := e.AppendObject((*zapCut)(&l[i])); err != nil {
			return err
		}
	}
	return nil
}

// marshal writes the fields under enc's caps. Text from outside the proxy
// (a client's, a backend's, a directory's, a token's, a policy's) goes
// through enc.str, enc.strs and the capped maps; the proxy's own words
// (kinds, events, results, configured names) through str.
func zapMarshal(r *Record, e zapcore.ObjectEncoder, enc zapEnc) error {
	enc.cut = enc.cut[:0]
	enc.oneName = enc.nameMax(r)
	zapStr(e, "session", r.Session)
	if r.IP.IsValid() {
		enc.scratch = r.IP.AppendTo(enc.scratch[:0])
		e.AddByteString("ip", enc.scratch)
	}
	if r.Port != 0 {
		e.AddUint16("port", r.Port)
	}
	zapStr(e, "listener", r.Listener)
	enc.identStr(e, "user", r.User)
	zapStr(e, "local", r.Local)
	zapStr(e, "backend", r.Backend)
	zapStr(e, "server", r.Server)
	zapStr(e, "event", r.Event)

	zapStr(e, "tls_version", r.TLSVersion)
	zapStr(e, "cipher", r.Cipher)
	enc.str(e, "sni", r.SNI)
	enc.str(e, "alpn", r.ALPN)
	enc.str(e, "client_cert", r.ClientCert)

	enc.str(e, "mechanism", r.Mechanism)
	zapNum(e, "attempt", int64(r.Attempt))
	if len(r.ClientID) > 0 {
		enc.stringMap(e, "client_id", r.ClientID)
	}
	zapStr(e, "authenticator", r.Authenticator)
	enc.str(e, "identity", r.Identity)
	enc.strs(e, "groups", r.Groups)
	enc.str(e, "token_issuer", r.TokenIssuer)
	enc.str(e, "token_client_id", r.TokenClientID)
	enc.strs(e, "scopes", r.Scopes)

	enc.str(e, "tag", r.Tag)
	enc.identStr(e, "command", r.Command)
	if r.UID {
		e.AddBool("uid", true)
	}
	enc.identStr(e, "mailbox", r.Mailbox)
	enc.str(e, "mailbox_raw", r.MailboxRaw)
	enc.identStr(e, "destination", r.Destination)
	nc := enc.nameCap(r)
	enc.names(e, "sources", r.Sources, nc)
	enc.names(e, "mailboxes", r.Mailboxes, nc)
	enc.strs(e, "patterns", r.Patterns)
	if len(r.Effects) > 0 {
		e.AddArray("effects", (*stringList)(&r.Effects))
	}
	enc.identStr(e, "selected", r.Selected)
	zapNum(e, "uidvalidity", int64(r.UIDValidity))
	if r.ReadOnly {
		e.AddBool("read_only", true)
	}
	enc.set(e, "set", r.Set)
	zapNum(e, "set_count", r.SetCount)
	zapStr(e, "fetch", r.Fetch)
	enc.strs(e, "items", r.Items)
	if len(r.SearchKeys) > 0 {
		e.AddArray("search_keys", (*stringList)(&r.SearchKeys))
	}
	enc.str(e, "store", r.StoreOp)
	enc.strs(e, "flags", r.Flags)
	enc.identStr(e, "identifier", r.Identifier) // to whom SETACL gives what: cut last
	enc.identStr(e, "rights", r.Rights)
	enc.str(e, "quota_root", r.QuotaRoot)
	if r.Quota != nil {
		zapIntMap(enc, e, "quota", r.Quota)
	}
	enc.strs(e, "enable", r.Enable)
	enc.strs(e, "entries", r.Entries)
	zapNum(e, "literal_bytes", r.LiteralBytes)
	if len(r.UIDs) > 0 && enc.caps.uids > 0 {
		e.AddArray("uids", &uidList{l: r.UIDs, n: enc.caps.uids})
	}
	if n := r.UIDCount; n > 0 || len(r.UIDs) > enc.caps.uids {
		e.AddInt("uid_count", max(n, len(r.UIDs)))
	}
	zapNum(e, "unnamed", int64(r.Unnamed))
	if len(r.UnnamedSeqs) > 0 && enc.caps.uids > 0 {
		e.AddArray("unnamed_seqs", &uidList{l: r.UnnamedSeqs, n: enc.caps.uids})
	}
	zapNum(e, "expunged", int64(r.Expunged))
	if len(r.ExpungedSeqs) > 0 && enc.caps.uids > 0 {
		// Shrunk as uids are; expunged keeps the count.
		e.AddArray("expunged_seqs", &uidList{l: r.ExpungedSeqs, n: enc.caps.uids})
	}
	if len(r.ExpungedUIDs) > 0 && enc.caps.uids > 0 {
		e.AddArray("expunged_uids", &uidList{l: r.ExpungedUIDs, n: enc.caps.uids})
	}
	zapNum(e, "content_bytes", r.ContentBytes)
	enc.strs(e, "content_shared_with", r.SharedWith)
	zapNum(e, "content_shared_count", int64(r.SharedCount))
	enc.str(e, "code_args", r.CodeArgs)

	zapStr(e, "result", r.Result)
	enc.str(e, "code", r.Code)
	enc.str(e, "reason", r.Reason)
	zapStr(e, "revision", r.Revision)
	zapStr(e, "limit", r.Limit)
	zapStr(e, "limit_key", r.LimitKey)
	if r.LimitOwn {
		e.AddBool("limit_own", true)
	}
	if r.Delay != 0 {
		e.AddFloat64("delay_ms", float64(r.Delay.Microseconds())/1000)
	}
	if r.Disconnect {
		e.AddBool("disconnect", true)
	}
	if len(r.Annot) > 0 {
		enc.annotations(e, r.Annot)
	}
	enc.str(e, "detail", r.Detail)
	zapStr(e, "actor", r.Actor)
	zapStr(e, "scope", r.Scope)

	if r.Duration != 0 {
		e.AddFloat64("duration_ms", float64(r.Duration.Microseconds())/1000)
	}
	zapNum(e, "bytes_in", r.BytesIn)
	zapNum(e, "bytes_out", r.BytesOut)

	zapNum(e, "commands", int64(r.Commands))
	if len(r.Counts) > 0 {
		zapIntMap(enc, e, "counts", r.Counts)
	}
	zapNum(e, "messages", int64(r.Messages))
	zapNum(e, "others_expunged", int64(r.OthersExpunged))
	zapNum(e, "auth_failures", int64(r.AuthFailures))

	enc.str(e, "subject", r.Subject)
	enc.strs(e, "names", r.Names)
	enc.str(e, "issuer", r.Issuer)
	if !r.NotAfter.IsZero() {
		e.AddString("not_after", r.NotAfter.UTC().Format(time.RFC3339))
	}

	zapStr(e, "host", r.Host)
	zapNum(e, "pid", int64(r.PID))
	zapStr(e, "software", r.Software)
	zapStr(e, "chain", r.Chain)
	zapStr(e, "key_id", r.KeyID)
	if r.Count != 0 {
		e.AddUint64("count", r.Count)
	}
	zapNum(e, "torn_bytes", r.Torn)
	if r.ResumedAt != 0 {
		e.AddUint64("resumed_at", r.ResumedAt)
	}
	if len(enc.cut) > 0 {
		e.AddArray("cut", cutList(enc.cut))
	}
	if enc.whole > 0 {
		e.AddInt("record_bytes", enc.whole)
	}
	return nil
}

func zapStr(e zapcore.ObjectEncoder, k, v string) {
	if v != "" {
		e.AddString(k, v)
	}
}

func zapNum(e zapcore.ObjectEncoder, k string, v int64) {
	if v != 0 {
		e.AddInt64(k, v)
	}
}

// str writes a string from outside the proxy, clipped to the field cap.
func (enc zapEnc) str(e zapcore.ObjectEncoder, k, v string) {
	if v == "" {
		return
	}
	c, whole := clip(v, enc.caps.field)
	if !whole {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: len(v)})
	}
	if c != "" {
		e.AddString(k, c)
	}
}

// identStr writes a field that says who did what to what: clipped to
// enc.oneName (nameMax).
func (enc zapEnc) identStr(e zapcore.ObjectEncoder, k, v string) {
	enc.capped(e, k, v, enc.oneName)
}

// capped writes v clipped to n.
func (enc zapEnc) capped(e zapcore.ObjectEncoder, k, v string, n int) {
	f := enc.caps.field
	enc.caps.field = n
	enc.str(e, k, v)
	enc.caps.field = f
}

// names writes a list of mailboxes a command read or watched (sources,
// mailboxes), each once already: up to caps.names entries, each clipped
// to n (nameCap), whatever max_list_items says, since each names a
// distinct mailbox an auditor asks about.
func (enc zapEnc) names(e zapcore.ObjectEncoder, k string, l []string, n int) {
	c := enc.caps
	enc.caps.field, enc.caps.items = n, c.names
	enc.strs(e, k, l)
	enc.caps = c
}

// strs writes a list from outside the proxy: its first caps.items
// entries, each clipped.
func (enc zapEnc) strs(e zapcore.ObjectEncoder, k string, l []string) {
	if len(l) == 0 {
		return
	}
	n, whole := 0, len(l) <= enc.caps.items
	for i, s := range l {
		n += len(s)
		if whole && i < enc.caps.items {
			_, whole = clip(s, enc.caps.field)
		}
	}
	if !whole {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: n, Items: len(l)})
	}
	if enc.caps.items == 0 {
		return
	}
	e.AddArray(k, &capList{l: l, caps: enc.caps})
}

type capList struct {
	l    []string
	caps caps
}

func (c *capList) MarshalLogArray(e zapcore.ArrayEncoder) error {
	for i, s := range c.l {
		if i == c.caps.items {
			break
		}
		s, _ = clip(s, c.caps.field)
		e.AppendString(s)
	}
	return nil
}

// stringMap writes a map from outside the proxy (client_id): its first
// caps.items entries in key order whose key fits the field cap whole (a
// key cut short could equal another) and is not one a reader takes for
// an earlier key (sameKey: a record has one reading, ARCHITECTURE.md
// §11), values clipped; what is left out is named in cut.
func (enc zapEnc) stringMap(e zapcore.ObjectEncoder, k string, m map[string]string) {
	keys := sortedKeys(m)
	n, kept, whole := 0, keys[:0], true
	for _, key := range keys {
		v := m[key]
		n += len(key) + len(v)
		_, wk := clip(key, enc.caps.field)
		if !wk || len(kept) == enc.caps.items || !keptKey(kept, key) {
			whole = false
			continue
		}
		kept = append(kept, key)
		if _, wv := clip(v, enc.caps.field); !wv {
			whole = false
		}
	}
	if !whole {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: n, Items: len(m)})
	}
	if len(kept) > 0 {
		e.AddObject(k, &cappedStrings{m: m, keys: kept, field: enc.caps.field})
	}
}

type cappedStrings struct {
	m     map[string]string
	keys  []string
	field int
}

func (c *cappedStrings) MarshalLogObject(e zapcore.ObjectEncoder) error {
	for _, k := range c.keys {
		v, _ := clip(c.m[k], c.field)
		e.AddString(k, v)
	}
	return nil
}

// intMap writes counts by name (session.close counts, SETQUOTA's quota)
// as stringMap does.
func zapIntMap[V int | int64](enc zapEnc, e zapcore.ObjectEncoder, k string, m map[string]V) {
	keys := sortedKeys(m)
	n, kept := 0, keys[:0]
	for _, key := range keys {
		n += len(key)
		if _, wk := clip(key, enc.caps.field); wk && len(kept) < enc.caps.items && keptKey(kept, key) {
			kept = append(kept, key)
		}
	}
	if len(kept) < len(m) {
		enc.cut = append(enc.cut, Cut{Field: k, Bytes: n, Items: len(m)})
	}
	if len(kept) > 0 {
		e.AddObject(k, &cappedInts[V]{m: m, keys: kept})
	}
}

type cappedInts[V int | int64] struct {
	m    map[string]V
	keys []string
}

func (c *cappedInts[V]) MarshalLogObject(e zapcore.ObjectEncoder) error {
	for _, k := range c.keys {
		e.AddInt64(k, int64(c.m[k]))
	}
	return nil
}

// annotations writes the policy's annotations (which may quote a
// client's text) when their JSON fits caps.annot; else none of them.
// Reflection is fine on the writer's goroutine; encoding/json sorts the
// keys.
func (enc zapEnc) annotations(e zapcore.ObjectEncoder, a map[string]any) {
	enc.annot.Reset()
	je := json.NewEncoder(&enc.annot)
	je.SetEscapeHTML(false) // as zap's own reflection encoder
	if err := je.Encode(a); err != nil {
		e.AddString("annotations_error", err.Error())
		return
	}
	b := bytes.TrimSuffix(enc.annot.Bytes(), []byte("\n"))
	if _, dup := dupKey(b); dup {
		// Keys a reader takes for one (sameKey): each object keeps the
		// first in key order, and cut says so.
		enc.cut = append(enc.cut, Cut{Field: "annotations", Bytes: len(b), Items: len(a)})
		var v any
		d := json.NewDecoder(bytes.NewReader(b))
		d.UseNumber()
		if d.Decode(&v) != nil {
			return
		}
		enc.annot.Reset()
		if je.Encode(oneKeyEach(v)) != nil {
			return
		}
		b = bytes.TrimSuffix(enc.annot.Bytes(), []byte("\n"))
	}
	if len(b) > enc.caps.annot {
		enc.cut = append(enc.cut, Cut{Field: "annotations", Bytes: len(b), Items: len(a)})
		return
	}
	if err := e.AddReflected("annotations", json.RawMessage(b)); err != nil {
		e.AddString("annotations_error", err.Error())
	}
}

// stringList writes a list of the proxy's own words (effects, search
// keys).
type stringList []string

func (l *stringList) MarshalLogArray(e zapcore.ArrayEncoder) error {
	for _, s := range *l {
		e.AppendString(s)
	}
	return nil
}

// uidList writes the first n UIDs.
type uidList struct {
	l []uint32
	n int
}

func (l *uidList) MarshalLogArray(e zapcore.ArrayEncoder) error {
	for i, u := range l.l {
		if i == l.n {
			break
		}
		e.AppendUint32(u)
	}
	return nil
}

func (enc zapEnc) set(e zapcore.ObjectEncoder, k, v string) {
	if v == "" {
		return
	}
	if b, ok := enc.canonSet(k, v); ok {
		e.AddByteString(k, b)
	} else {
		enc.capped(e, k, v, max(enc.caps.field, enc.caps.ident))
	}
}
