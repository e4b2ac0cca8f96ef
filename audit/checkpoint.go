package audit

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.uber.org/zap"
)

// KindAuditCheckpoint is the kind of a checkpoint. Checkpoints are kept
// apart from the trail, never in it.
const KindAuditCheckpoint Kind = "audit.checkpoint"

// A Checkpoint says that the trail held the record Seq, whose link (what
// the next record stores as prev or hmac) is Link, at Time. It is signed
// with the trail's key, so that it cannot be rewritten to match a trail
// cut short. The chain proves integrity; a checkpoint kept in a second
// place (another disk, another host) proves completeness up to Seq.
type Checkpoint struct {
	Time  time.Time `json:"ts"`
	Kind  Kind      `json:"kind"`
	V     int       `json:"v"`
	Seq   uint64    `json:"seq"`
	Link  string    `json:"link"`
	Chain string    `json:"chain"`
	KeyID string    `json:"key_id"`
	MAC   string    `json:"mac"`
}

// Checkpointer stores checkpoints. The trail calls it from its writer
// goroutine after each fsync, once the records it names are durable.
type Checkpointer interface {
	WriteCheckpoint(c *Checkpoint) error
}

// mac is HMAC-SHA256 over the checkpoint's fields, hex.
func (c *Checkpoint) mac(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("imapwarden audit checkpoint\x00"))
	m.Write([]byte(c.Time.UTC().Format(time.RFC3339Nano) + "\x00" + string(c.Kind) + "\x00" + strconv.Itoa(c.V) + "\x00" +
		strconv.FormatUint(c.Seq, 10) + "\x00" + c.Link + "\x00" + c.Chain + "\x00" + c.KeyID))
	return hex.EncodeToString(m.Sum(nil))
}

// check verifies the signature with any of keys.
func (c *Checkpoint) check(keys [][]byte) error {
	if c.Kind != KindAuditCheckpoint || c.V != SchemaVersion || len(c.Link) != 2*sha256.Size {
		return errors.New("audit: not a checkpoint")
	}
	if len(keys) == 0 {
		return errors.New("audit: a checkpoint is signed with the trail's key: give the key")
	}
	for _, k := range keys {
		if hmac.Equal([]byte(c.mac(k)), []byte(c.MAC)) {
			return nil
		}
	}
	return errors.New("audit: the checkpoint's signature matches none of the keys given: wrong key, or the checkpoint was edited")
}

// CheckpointFile keeps the newest checkpoint in one file, replaced
// atomically (write, fsync, rename, fsync the directory), so that a
// killed or crashed process leaves the previous one or the new one.
// Put it on another file system than the trail, or ship it elsewhere.
type CheckpointFile struct{ path string }

// NewCheckpointFile returns a Checkpointer writing to path.
func NewCheckpointFile(path string) *CheckpointFile { return &CheckpointFile{path: path} }

func (f *CheckpointFile) WriteCheckpoint(c *Checkpoint) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	b = append(b, '\n')
	tmp := f.path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("audit: checkpoint: %w", err)
	}
	_, err = fh.Write(b)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, f.path)
	}
	if err != nil {
		return fmt.Errorf("audit: checkpoint %s: %w", f.path, err)
	}
	if d, err := os.Open(filepath.Dir(f.path)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// Last reads the newest checkpoint, nil when there is none yet.
func (f *CheckpointFile) Last(keys [][]byte) (*Checkpoint, error) {
	c, err := ReadCheckpoint(f.path, keys)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return c, err
}

// ReadCheckpoint reads a checkpoint file and checks its signature.
func ReadCheckpoint(path string, keys [][]byte) (*Checkpoint, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("audit: checkpoint: %w", err)
	}
	var c Checkpoint
	b = bytes.TrimSpace(b)
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("audit: checkpoint %s: %w", path, err)
	}
	if k, dup := dupKey(b); dup {
		return nil, fmt.Errorf("audit: checkpoint %s: the key %q is there twice: not a checkpoint the trail wrote", path, k)
	}
	if err := c.check(keys); err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return &c, nil
}

// checkpointAt signs and stores the chain's state at seq, when it moved:
// records written and, unless SyncNever, fsynced. A failure fails Health:
// the trail may be complete, but nothing proves it. Only the writer
// goroutine calls it (New and finish, before and after it runs), so that
// checkpointed is its own.
func (t *Trail) checkpointAt(seq uint64, prevHex [64]byte) {
	cp := t.opts.Checkpoint
	if cp == nil || seq == t.checkpointed {
		return
	}
	c := &Checkpoint{Time: time.Now(), Kind: KindAuditCheckpoint, V: SchemaVersion, Seq: seq,
		Link: string(prevHex[:]), Chain: t.link.name(), KeyID: KeyID(t.opts.Key)}
	c.MAC = c.mac(t.opts.Key)
	if err := cp.WriteCheckpoint(c); err != nil {
		t.sinkErrors.Add(1)
		t.dur.fail(err)
		t.log.Error("audit checkpoint failed", zap.Error(err))
		return
	}
	t.checkpointed = c.Seq
}

// checkResume refuses to continue a trail shorter than its checkpoint:
// records that were acknowledged are gone, and writing on would bury the
// gap under new records with the same seqs. A sink that cannot read its
// records back (stdout, syslog; resumed false) continues the chain from
// the checkpoint instead: its audit.start is signed and linked to the
// checkpoint's record, where a new chain would be linked to nothing
// (ARCHITECTURE.md §11).
func (t *Trail) checkResume(resumed bool) error {
	f, ok := t.opts.Checkpoint.(interface {
		Last(keys [][]byte) (*Checkpoint, error)
	})
	if !ok {
		return nil
	}
	c, err := f.Last([][]byte{t.opts.Key})
	if err != nil {
		return err
	}
	if c != nil && !resumed {
		// Signed with the key (Last checked it): its link is one of ours.
		t.seq = c.Seq
		copy(t.prevHex[:], c.Link)
		return nil
	}
	if c != nil && c.Seq > t.seq {
		return fmt.Errorf("audit: the trail ends at seq %d but the checkpoint of %s says seq %d was written: the trail was cut short; restore it, or move the checkpoint aside to start a new record of completeness",
			t.seq, c.Time.UTC().Format(time.RFC3339), c.Seq)
	}
	if c != nil && c.Seq == t.seq && !hmac.Equal([]byte(c.Link), t.prevHex[:]) {
		return fmt.Errorf("audit: the last stored record (seq %d) is not the one the checkpoint of %s signed: it was replaced; restore the trail, or move it and the checkpoint aside to start a new chain",
			t.seq, c.Time.UTC().Format(time.RFC3339))
	}
	return nil
}
