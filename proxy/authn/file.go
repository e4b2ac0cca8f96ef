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
type File struct {
	path string
	sem  chan struct{} // bounds hashing at once (Argon2id takes memory)

	mu      sync.Mutex
	checked time.Time
	stamp   fileStamp
	users   map[string]fileUser // by proxy.FoldUser of the name
	dummy   string              // a hash of the file, checked for unknown users
}

type fileUser struct {
	name   string
	hash   string
	groups []string
}

type fileStamp struct {
	mod  time.Time
	size int64
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
	if err := f.reload(true); err != nil {
		return nil, err
	}
	return f, nil
}

// reload reads the file when it changed. On error the users already
// loaded stay (unless first).
func (f *File) reload(first bool) error {
	st, err := os.Stat(f.path)
	if err != nil {
		return fmt.Errorf("authn file: %w", err)
	}
	stamp := fileStamp{st.ModTime(), st.Size()}
	if !first && stamp == f.stamp {
		return nil
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		return fmt.Errorf("authn file: %w", err)
	}
	users, dummy, err := parsePasswd(data)
	if err != nil {
		return fmt.Errorf("authn file %s: %w", f.path, err)
	}
	f.users, f.dummy, f.stamp = users, dummy, stamp
	return nil
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
	if now := time.Now(); now.Sub(f.checked) >= time.Second {
		f.checked = now
		// A broken edit keeps the users loaded before it.
		_ = f.reload(false)
	}
	u, ok := f.users[proxy.FoldUser(c.User)]
	dummy := f.dummy
	f.mu.Unlock()
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
