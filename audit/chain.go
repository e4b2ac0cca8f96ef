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

// linker computes the link to a record: SHA-256 of its line (without the
// line break), or HMAC-SHA256 with a key.
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
	hex.Encode(dst, l.sum[:])
}

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
