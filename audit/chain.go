package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"os"
)

// Chain algorithms, as written in audit.start records.
const (
	ChainSHA256     = "sha256"
	ChainHMACSHA256 = "hmac-sha256"
)

// MinKeyLen is the shortest HMAC key LoadKey accepts: a key must not be
// guessable from the records it signs.
const MinKeyLen = 16

// genesis is the prev of a chain's first record.
var genesis = bytes.Repeat([]byte{'0'}, 2*sha256.Size)

// LoadKey reads an HMAC key from a file: its bytes, without a final line
// break. Anyone who can read the key can rewrite the trail undetected, so
// the file should be readable by the proxy (and the auditors) only.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: key: %w", err)
	}
	b = bytes.TrimRight(b, "\r\n")
	if len(b) < MinKeyLen {
		return nil, fmt.Errorf("audit: key %s: %d bytes, want at least %d", path, len(b), MinKeyLen)
	}
	return b, nil
}

// KeyID names a key in audit.start records without revealing it: the
// first 8 bytes of SHA-256 over a label and the key, hex.
func KeyID(key []byte) string {
	h := sha256.New()
	h.Write([]byte("imapwarden audit key id\x00"))
	h.Write(key)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// sigField ends every record of a keyed trail: `,"sig":"` + HMAC-SHA256
// with the key over the line before it, hex, + `"}`. The record signs
// itself, so that the last one (which no later record covers) is proven
// too; its sig is the link the next record stores as hmac (ARCHITECTURE.md
// §11). The MAC input starts with `{"ts":`, which no checkpoint's does.
var sigField = []byte(`,"sig":"`)

// sigLen is the length of a record's signature suffix.
const sigLen = len(`,"sig":"`) + 2*sha256.Size + len(`"}`)

// splitSig splits a record into the bytes its sig covers and the sig (hex),
// or returns nil when the record has no signature at its end. In valid
// JSON, that suffix can only be the top-level object's last member.
func splitSig(rec []byte) (body, sig []byte) {
	n := len(rec) - sigLen
	if n < 1 || !bytes.HasPrefix(rec[n:], sigField) || !bytes.HasSuffix(rec, []byte(`"}`)) {
		return nil, nil
	}
	sig = rec[n+len(sigField) : len(rec)-2]
	for _, c := range sig {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return nil, nil
		}
	}
	return rec[:n], sig
}

// linker computes the link to a record: SHA-256 of its line (without the
// line break), or, with a key, the record's sig: HMAC-SHA256 over the line
// without its sig (sigField).
type linker struct {
	mac hash.Hash // nil: plain SHA-256
	sum [sha256.Size]byte
}

func newLinker(key []byte) *linker {
	l := &linker{}
	if key != nil {
		l.mac = hmac.New(sha256.New, key)
	}
	return l
}

// link writes the hex link of line into dst (2*sha256.Size bytes).
func (l *linker) link(dst, line []byte) {
	if l.mac == nil {
		l.sum = sha256.Sum256(line)
	} else {
		l.mac.Reset()
		l.mac.Write(line)
		l.mac.Sum(l.sum[:0])
	}
	// hex.Encode, two bytes of a table for each byte: the link is
	// written once for each record.
	dst = dst[:2*len(l.sum)]
	for i, v := range l.sum {
		dst[2*i], dst[2*i+1] = hexPairs[2*int(v)], hexPairs[2*int(v)+1]
	}
}

// hexPairs is each byte's two hex digits, in byte order.
var hexPairs = func() string {
	var b [512]byte
	for i := range 256 {
		hex.Encode(b[2*i:], []byte{byte(i)})
	}
	return string(b[:])
}()

func (l *linker) field() string {
	if l.mac == nil {
		return "prev"
	}
	return "hmac"
}

func (l *linker) name() string {
	if l.mac == nil {
		return ChainSHA256
	}
	return ChainHMACSHA256
}
