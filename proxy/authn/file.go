package authn

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/imapwarden/imapwarden/internal/filemode"
	"github.com/imapwarden/imapwarden/proxy"
)

// File checks passwords against a passwd-style file, one user a line:
//
//	alice:$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA:staff,vpn
//	bob:$2y$10$...
//
// user, hash (Argon2id in the PHC format, or bcrypt), and optional
// comma-separated groups. Blank lines and lines starting with "#" are
// skipped. Plain or weak hashes are refused at load. The file is read
// again when it changes (checked at most once a second).
//
// A changed file that does not load (a line that does not parse, a hash
// not taken, a mode others may read, the file gone) refuses every login
// through this authenticator until it loads again: keeping the users read
// before it would keep a user the edit removed (a revoked account) able
// to log in, and nothing can tell a removal from the rest of the edit.
// OnReload says so at once.
type File struct {
	path string
	sem  chan struct{} // bounds hashing at once (Argon2id takes memory)

	mu      sync.Mutex
	checked time.Time
	stamp   fileStamp
	users   map[string]fileUser // by proxy.FoldUser of the name
	dummy   string              // a hash of the file, checked for unknown users
	// broken: the last re-read failed, at failed; no login passes.
	broken   error
	failed   fileStamp
	onReload func(path string, err error)
}

type fileUser struct {
	name   string
	hash   string
	groups []string
}

type fileStamp struct {
	mod  time.Time
	size int64
	mode os.FileMode // a chmod making it readable is a change
}

// FileOptions configure a File.
type FileOptions struct {
	Path string
	// MaxConcurrent bounds password hashes computed at once; more wait.
	// Default: the number of CPUs.
	MaxConcurrent int
}

// NewFile loads the file; an error names the bad line.
func NewFile(o FileOptions) (*File, error) {
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = runtime.GOMAXPROCS(0)
	}
	f := &File{path: o.Path, sem: make(chan struct{}, o.MaxConcurrent)}
	if _, err := f.reload(true); err != nil {
		return nil, err
	}
	return f, nil
}

// reload reads the file when it changed. It reports whether it read
// (changed) and the error of a file not in force. On error the file
// refuses every login (unless first: NewFile fails).
func (f *File) reload(first bool) (changed bool, err error) {
	stamp := fileStamp{}
	st, err := os.Stat(f.path)
	if err == nil {
		stamp = fileStamp{st.ModTime(), st.Size(), st.Mode()}
	}
	switch {
	case first:
	case f.broken == nil && err == nil && stamp == f.stamp:
		return false, nil
	case f.broken != nil && stamp == f.failed:
		return false, f.broken // reported when it failed
	}
	users, dummy, err := f.read(err)
	if err != nil {
		if !first {
			f.users, f.broken, f.failed = nil, err, stamp
		}
		return true, err
	}
	f.users, f.dummy, f.stamp, f.broken = users, dummy, stamp, nil
	return true, nil
}

// read loads the file; statErr is os.Stat's.
func (f *File) read(statErr error) (map[string]fileUser, string, error) {
	if statErr != nil {
		return nil, "", fmt.Errorf("authn file: %w", statErr)
	}
	// Password hashes: anyone reading them can guess offline.
	if err := filemode.Secret(f.path); err != nil {
		return nil, "", fmt.Errorf("authn file: %w", err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return nil, "", fmt.Errorf("authn file: %w", err)
	}
	users, dummy, err := parsePasswd(data)
	if err != nil {
		return nil, "", fmt.Errorf("authn file %s: %w", f.path, err)
	}
	return users, dummy, nil
}

// OnReload sets fn to be told of each re-read of the changed file: err nil
// when the new file is in force, else why no login passes until it loads.
// fn is called without the File's lock held.
func (f *File) OnReload(fn func(path string, err error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.onReload = fn
}

func parsePasswd(data []byte) (map[string]fileUser, string, error) {
	users := map[string]fileUser{}
	dummy := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		parts := strings.Split(line, ":")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" {
			return nil, "", fmt.Errorf("line %d: want user:hash[:groups]", n)
		}
		if err := checkHash(parts[1]); err != nil {
			return nil, "", fmt.Errorf("line %d (%s): %w", n, parts[0], err)
		}
		u := fileUser{name: parts[0], hash: parts[1]}
		if len(parts) == 3 && parts[2] != "" {
			for _, g := range strings.Split(parts[2], ",") {
				if g = strings.TrimSpace(g); g != "" {
					u.groups = append(u.groups, g)
				}
			}
		}
		// The lookup's equivalence is the Limiter's and the policy's
		// (ARCHITECTURE.md §17): a name that folds to another is one user.
		key := proxy.FoldUser(u.name)
		if _, dup := users[key]; dup {
			return nil, "", fmt.Errorf("line %d: %s is listed twice", n, u.name)
		}
		users[key] = u
		if dummy == "" {
			dummy = u.hash
		}
	}
	return users, dummy, sc.Err()
}

// Verify implements Verifier: passwords only.
func (f *File) Verify(ctx context.Context, c *proxy.Credentials) (*proxy.Identity, error) {
	if c.IsToken() {
		return nil, ErrNotApplicable
	}
	if c.Password == "" {
		return nil, fmt.Errorf("empty password: %w", proxy.ErrAuthFailed)
	}
	f.mu.Lock()
	var changed bool
	var rerr error
	if now := time.Now(); now.Sub(f.checked) >= time.Second {
		f.checked = now
		changed, rerr = f.reload(false)
	}
	broken, report := f.broken, f.onReload
	u, ok := f.users[proxy.FoldUser(c.User)]
	dummy := f.dummy
	f.mu.Unlock()
	if changed && report != nil {
		report(f.path, rerr)
	}
	if broken != nil {
		// Not a failed login: the user's password was never checked.
		return nil, fmt.Errorf("%s is not in force, no login passes until it loads: %w", f.path, broken)
	}
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-f.sem }()
	if !ok {
		// As costly as a wrong password: the time tells nothing.
		if dummy != "" {
			checkPassword(dummy, c.Password)
		}
		return nil, ErrUnknownUser
	}
	if !checkPassword(u.hash, c.Password) {
		return nil, fmt.Errorf("wrong password: %w", proxy.ErrAuthFailed)
	}
	return &proxy.Identity{User: u.name, Groups: u.groups}, nil
}

// argon2Params are the parameters of an Argon2id PHC string.
type argon2Params struct {
	m    uint32 // KiB
	t    uint32
	p    uint8
	salt []byte
	key  []byte
}

var errHashFormat = errors.New("unsupported hash: want Argon2id ($argon2id$...) or bcrypt ($2a$, $2b$, $2y$)")

func parseArgon2id(h string) (argon2Params, error) {
	var a argon2Params
	f := strings.Split(h, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(f) != 6 || f[1] != "argon2id" || f[2] != "v=19" {
		return a, errHashFormat
	}
	for _, kv := range strings.Split(f[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return a, errHashFormat
		}
		switch k {
		case "m":
			a.m = uint32(n)
		case "t":
			a.t = uint32(n)
		case "p":
			if n > 255 {
				return a, errHashFormat
			}
			a.p = uint8(n)
		default:
			return a, errHashFormat
		}
	}
	var err error
	if a.salt, err = base64.RawStdEncoding.DecodeString(f[4]); err != nil {
		return a, errHashFormat
	}
	if a.key, err = base64.RawStdEncoding.DecodeString(f[5]); err != nil {
		return a, errHashFormat
	}
	return a, nil
}

// checkHash refuses what is not a hash, or a weak or absurd one (a file
// must not make every login cost a gigabyte).
func checkHash(h string) error {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		a, err := parseArgon2id(h)
		if err != nil {
			return err
		}
		if a.m < 8*1024 || a.m > 1<<20 || a.t < 1 || a.t > 20 || a.p < 1 || len(a.salt) < 8 || len(a.key) < 16 {
			return fmt.Errorf("argon2id parameters out of range (m 8MiB..1GiB, t 1..20, p >= 1, salt >= 8 bytes, key >= 16 bytes)")
		}
		return nil
	case strings.HasPrefix(h, "$2a$") || strings.HasPrefix(h, "$2b$") || strings.HasPrefix(h, "$2y$"):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil {
			return errHashFormat
		}
		if cost < 10 {
			return fmt.Errorf("bcrypt cost %d is below 10", cost)
		}
		return nil
	}
	return errHashFormat
}

// checkPassword compares in constant time.
func checkPassword(hash, pw string) bool {
	if strings.HasPrefix(hash, "$argon2id$") {
		a, err := parseArgon2id(hash)
		if err != nil {
			return false
		}
		got := argon2.IDKey([]byte(pw), a.salt, a.t, a.m, a.p, uint32(len(a.key)))
		return subtle.ConstantTimeCompare(got, a.key) == 1
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

// Default Argon2id parameters of HashPassword: OWASP's first choice
// (19 MiB, 2 passes, 1 lane).
const (
	argon2Memory = 19 * 1024
	argon2Time   = 2
	argon2Lanes  = 1
)

// HashPassword returns an Argon2id PHC string for a password file.
func HashPassword(pw string) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	key := argon2.IDKey([]byte(pw), salt, argon2Time, argon2Memory, argon2Lanes, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", argon2Memory, argon2Time, argon2Lanes,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}
