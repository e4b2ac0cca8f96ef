package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxSize is the size at which a FileSink rotates by default.
const DefaultMaxSize = 100 << 20

// maxRecordLen bounds how far back LastRecord looks for the start of the
// last record; real records are a few hundred bytes.
const maxRecordLen = 1 << 20

// FileOptions configure a FileSink.
type FileOptions struct {
	// Path of the active file, e.g. /var/log/imapwarden/audit.jsonl.
	// Rotated files are renamed next to it with the rotation time:
	// audit-20260102T150405.000000000Z.jsonl.
	Path string
	// MaxSize: the file is rotated before a write would make it larger
	// (a single batch larger than MaxSize goes alone into a file). 0
	// means DefaultMaxSize; negative means no size limit.
	MaxSize int64
	// RotateEvery also rotates when a period of this length ends
	// (periods are aligned to UTC midnight for lengths that divide a
	// day), at the first write after it. 0: never.
	RotateEvery time.Duration
	// Mode of new files; default 0600: records name users and mailboxes.
	// An existing file of the trail with a permission bit outside Mode
	// (made by an installer or logrotate under umask 022) is narrowed to
	// Mode at open, and OnModeFixed told.
	Mode os.FileMode
	// OnModeFixed, when set, is told of each file of the trail whose mode
	// was narrowed (from its old mode to the new one), to log it.
	OnModeFixed func(path string, from, to os.FileMode)

	now func() time.Time // tests
}

// FileSink writes records to a file and rotates it. The rotated files and
// the active one form one chain: "imapwarden audit verify" takes them in
// any order. A lock file (Path + ".lock") keeps a second process from
// writing the same trail.
type FileSink struct {
	o         FileOptions
	f         *os.File
	lock      *os.File
	size      int64
	periodEnd time.Time
	last      []byte // last complete record found at open
	torn      int64  // bytes of a torn last line cut off at open
	// local: f is a regular file on a local filesystem, whose writes
	// wait on nothing but this kernel (writeDirect).
	local bool
}

var (
	_ Resumer    = (*FileSink)(nil)
	_ directSink = (*FileSink)(nil)
	_ fileSyncer = (*FileSink)(nil)
)

// OpenFile opens (or creates) the active file of a trail. A torn last
// line, left by a process killed in the middle of a write, is cut off,
// and its length reported by LastRecord for the audit.start record.
func OpenFile(o FileOptions) (*FileSink, error) {
	if o.Path == "" {
		return nil, errors.New("audit: file sink without a path")
	}
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.Mode == 0 {
		o.Mode = 0o600
	}
	if o.now == nil {
		o.now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(o.Path), 0o750); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	s := &FileSink{o: o}
	lock, err := os.OpenFile(o.Path+".lock", os.O_RDWR|os.O_CREATE, o.Mode)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("audit: %s is being written by another process", o.Path)
		}
		return nil, fmt.Errorf("audit: lock %s: %w", o.Path, err)
	}
	s.lock = lock
	if err := s.narrowRotated(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := s.open(); err != nil {
		lock.Close()
		return nil, err
	}
	return s, nil
}

// recover reads the last record of the trail and cuts a torn line off
// the active file.
func (s *FileSink) recover() error {
	last, torn, err := lastLine(s.o.Path, true)
	if err != nil {
		return err
	}
	if last == nil {
		// A new or empty active file: the chain goes on from the newest
		// rotated one.
		rotated, err := rotatedFiles(s.o.Path)
		if err != nil {
			return err
		}
		if n := len(rotated); n > 0 {
			if last, _, err = lastLine(rotated[n-1], false); err != nil {
				return err
			}
		}
	}
	s.last, s.torn = last, torn
	return nil
}

// LastRecord implements Resumer.
func (s *FileSink) LastRecord() ([]byte, int64, error) { return s.last, s.torn, nil }

func (s *FileSink) open() error {
	f, err := os.OpenFile(s.o.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, s.o.Mode)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit: %w", err)
	}
	if err := s.narrow(f, s.o.Path, fi.Mode()); err != nil {
		f.Close()
		return err
	}
	s.f, s.size = f, fi.Size()
	s.local = fi.Mode().IsRegular() && localFS(f)
	if s.o.RotateEvery > 0 {
		// A file last written in an earlier period is rotated at the
		// first write.
		from := s.o.now()
		if s.size > 0 {
			from = fi.ModTime()
		}
		s.periodEnd = from.UTC().Truncate(s.o.RotateEvery).Add(s.o.RotateEvery)
	}
	return nil
}

// narrow takes from an open file of the trail the permission bits
// outside Mode: a 0644 file gets the trail readable by every local user.
func (s *FileSink) narrow(f *os.File, path string, mode os.FileMode) error {
	from := mode.Perm()
	to := from & s.o.Mode.Perm()
	if to == from {
		return nil
	}
	if err := f.Chmod(to); err != nil {
		return fmt.Errorf("audit: %s is mode %04o, readable beyond %04o, and cannot be narrowed: %w", path, from, s.o.Mode.Perm(), err)
	}
	if s.o.OnModeFixed != nil {
		s.o.OnModeFixed(path, from, to)
	}
	return nil
}

// narrowRotated narrows the rotated files of the trail as narrow does the
// active one: they hold the same records.
func (s *FileSink) narrowRotated() error {
	files, err := rotatedFiles(s.o.Path)
	if err != nil {
		return err
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("audit: %w", err)
		}
		fi, err := f.Stat()
		if err == nil {
			err = s.narrow(f, name, fi.Mode())
		}
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Write implements Sink. The batch goes whole into one file: a write that
// fails half way is cut back off, so that the file never keeps part of a
// batch the trail will write again or drop.
func (s *FileSink) Write(p []byte) error {
	if s.f == nil {
		return errors.New("audit: file sink closed")
	}
	if s.rotationDue(len(p)) {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	return s.append(p)
}

// append writes p to the active file, cutting a partial write back off.
func (s *FileSink) append(p []byte) error {
	n, err := s.f.Write(p)
	if err != nil {
		err = fmt.Errorf("audit: write %s: %w", s.o.Path, err)
		if n > 0 {
			if terr := s.f.Truncate(s.size); terr != nil {
				// The file keeps a torn line inside the chain; verify
				// will point at it.
				return errors.Join(err, fmt.Errorf("audit: cannot cut a partial write off %s: %w", s.o.Path, terr))
			}
		}
		return err
	}
	s.size += int64(n)
	return nil
}

// rotationDue says whether a write of n bytes rotates the file first.
func (s *FileSink) rotationDue(n int) bool {
	return s.size > 0 && ((s.o.MaxSize > 0 && s.size+int64(n) > s.o.MaxSize) ||
		(s.o.RotateEvery > 0 && !s.o.now().Before(s.periodEnd)))
}

// writeDirect implements directSink: a write that neither rotates (an
// fsync, a rename) nor goes to a pipe, a device or a network or FUSE
// filesystem, which can block for as long as their other end likes.
// Rotation is decided once, here: a period that ends between a check and
// the write cannot make the caller rotate.
func (s *FileSink) writeDirect(p []byte) (bool, error) {
	if s.f == nil || !s.local || s.rotationDue(len(p)) {
		return false, nil
	}
	return true, s.append(p)
}

// Sync implements Sink.
func (s *FileSink) Sync() error {
	if s.f == nil {
		return nil
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", s.o.Path, err)
	}
	return nil
}

// syncFile implements fileSyncer.
func (s *FileSink) syncFile() interface{ Sync() error } {
	if s.f == nil {
		return nil
	}
	return s.f
}

// Close implements Sink.
func (s *FileSink) Close() error {
	var err error
	if s.f != nil {
		err = s.f.Close()
		s.f = nil
	}
	if s.lock != nil {
		s.lock.Close() // releases the flock
		s.lock = nil
	}
	return err
}

// rotate moves the active file aside and starts a new one. The old file
// is synced first: a rotated file is complete.
func (s *FileSink) rotate() error {
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("audit: rotate: sync: %w", err)
	}
	now := s.o.now().UTC()
	name := rotatedName(s.o.Path, now)
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, os.ErrNotExist) {
			break
		}
		name = rotatedName(s.o.Path, now.Add(time.Duration(i)))
	}
	if err := os.Rename(s.o.Path, name); err != nil {
		return fmt.Errorf("audit: rotate: %w", err)
	}
	old := s.f
	if err := s.open(); err != nil {
		// Records keep going to the renamed file until a rotation
		// works: nothing is lost.
		return err
	}
	old.Close()
	if s.o.RotateEvery > 0 {
		s.periodEnd = now.Truncate(s.o.RotateEvery).Add(s.o.RotateEvery)
	}
	return syncDir(filepath.Dir(s.o.Path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("audit: sync %s: %w", dir, err)
	}
	return nil
}

const rotatedLayout = "20060102T150405.000000000Z"

func rotatedName(path string, t time.Time) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-" + t.UTC().Format(rotatedLayout) + ext
}

var rotatedStamp = regexp.MustCompile(`^-\d{8}T\d{6}\.\d{9}Z$`)

// rotatedFiles lists the rotated files of the trail at path, oldest
// first (the names sort by time).
func rotatedFiles(path string) ([]string, error) {
	ext := filepath.Ext(path)
	stem := strings.TrimSuffix(filepath.Base(path), ext)
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !strings.HasPrefix(n, stem) || !strings.HasSuffix(n, ext) {
			continue
		}
		if rotatedStamp.MatchString(strings.TrimSuffix(strings.TrimPrefix(n, stem), ext)) {
			out = append(out, filepath.Join(filepath.Dir(path), n))
		}
	}
	slices.Sort(out)
	return out, nil
}

// Files returns the files of the trail whose active file is path: the
// rotated ones, oldest first, then the active one (if it exists). It is
// what "imapwarden audit verify" needs to check a whole trail.
func Files(path string) ([]string, error) {
	out, err := rotatedFiles(path)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

// lastLine returns the last complete line of a file (without "\n") and
// the length of what follows it: a torn line, or the zeros a crashed
// machine may leave. With cut, that tail is removed from the file.
func lastLine(path string, cut bool) ([]byte, int64, error) {
	flag := os.O_RDONLY
	if cut {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("audit: %w", err)
	}
	size := fi.Size()
	// Read the tail backwards until it holds a whole line before the last
	// "\n", or the file's start.
	var tail []byte
	chunk := int64(64 << 10)
	for {
		n := min(size, int64(len(tail))+chunk)
		buf := make([]byte, n)
		if _, err := f.ReadAt(buf, size-n); err != nil && err != io.EOF {
			return nil, 0, fmt.Errorf("audit: read %s: %w", path, err)
		}
		tail = buf
		end := bytes.LastIndexByte(tail, '\n')
		if end >= 0 {
			start := bytes.LastIndexByte(tail[:end], '\n') + 1
			if start > 0 || n == size {
				torn := int64(len(tail) - end - 1)
				if torn > 0 && cut {
					if err := cutTail(f, size-torn); err != nil {
						return nil, 0, err
					}
				}
				return bytes.Clone(tail[start:end]), torn, nil
			}
		} else if n == size {
			// No complete line at all: everything is torn.
			if size > 0 && cut {
				if err := cutTail(f, 0); err != nil {
					return nil, 0, err
				}
			}
			return nil, size, nil
		}
		if n > maxRecordLen {
			return nil, 0, fmt.Errorf("audit: %s: last record longer than %d bytes", path, maxRecordLen)
		}
	}
}

func cutTail(f *os.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("audit: cut torn line: %w", err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("audit: cut torn line: %w", err)
	}
	return nil
}
