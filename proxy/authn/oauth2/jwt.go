package oauth2

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"time"
)

// algorithm says how one JWS "alg" verifies (RFC 7518 §3, RFC 8037).
type algorithm struct {
	kty   string      // RSA, EC, OKP
	hash  crypto.Hash // 0 for EdDSA
	pss   bool
	curve string // EC: P-256 ...; OKP: Ed25519
}

var algorithms = map[string]algorithm{
	"RS256": {kty: "RSA", hash: crypto.SHA256}, "RS384": {kty: "RSA", hash: crypto.SHA384}, "RS512": {kty: "RSA", hash: crypto.SHA512},
	"PS256": {kty: "RSA", hash: crypto.SHA256, pss: true}, "PS384": {kty: "RSA", hash: crypto.SHA384, pss: true}, "PS512": {kty: "RSA", hash: crypto.SHA512, pss: true},
	"ES256": {kty: "EC", hash: crypto.SHA256, curve: "P-256"}, "ES384": {kty: "EC", hash: crypto.SHA384, curve: "P-384"}, "ES512": {kty: "EC", hash: crypto.SHA512, curve: "P-521"},
	"EdDSA": {kty: "OKP", curve: "Ed25519"},
}

// jwk is one key of a JWKS (RFC 7517), parsed.
type jwk struct {
	kid, alg, use, kty string
	pub                crypto.PublicKey
}

type jwkJSON struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func b64(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }

// parseJWK reads the public part of RSA, EC and Ed25519 keys; others
// (oct, private-only) are skipped.
func parseJWK(j jwkJSON) (*jwk, error) {
	k := &jwk{kid: j.Kid, alg: j.Alg, use: j.Use, kty: j.Kty}
	switch j.Kty {
	case "RSA":
		n, err1 := b64(j.N)
		e, err2 := b64(j.E)
		if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
			// Below 2048 bits is refused (RFC 7518 §3.3).
			return nil, errors.New("bad or short RSA key")
		}
		k.pub = &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
	case "EC":
		var c elliptic.Curve
		switch j.Crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		case "P-521":
			c = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", j.Crv)
		}
		x, err1 := b64(j.X)
		y, err2 := b64(j.Y)
		if err1 != nil || err2 != nil {
			return nil, errors.New("bad EC key")
		}
		size := (c.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, errors.New("bad EC key size")
		}
		// Parse through the uncompressed point form, which checks that
		// the point is on the curve.
		point := append(append([]byte{4}, x...), y...)
		pub, err := ecdsa.ParseUncompressedPublicKey(c, point)
		if err != nil {
			return nil, fmt.Errorf("bad EC key: %w", err)
		}
		k.pub = pub
	case "OKP":
		x, err := b64(j.X)
		if j.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("bad OKP key (Ed25519 only)")
		}
		k.pub = ed25519.PublicKey(x)
	default:
		return nil, nil
	}
	return k, nil
}

// accepts reports whether k may verify alg: the right type and curve,
// the key's own "alg" if it has one, and a "use" of sig if any.
func (k *jwk) accepts(alg string) bool {
	a := algorithms[alg]
	if k.use != "" && k.use != "sig" {
		return false
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if a.kty != "RSA" {
			return false
		}
	case *ecdsa.PublicKey:
		if a.kty != "EC" || pub.Curve.Params().Name != a.curve {
			return false
		}
	case ed25519.PublicKey:
		if a.kty != "OKP" {
			return false
		}
	default:
		return false
	}
	return k.alg == "" || k.alg == alg
}

// verify checks sig over signed with k for alg.
func (k *jwk) verify(alg string, signed, sig []byte) bool {
	a := algorithms[alg]
	var digest []byte
	if a.hash != 0 {
		h := a.hash.New()
		h.Write(signed)
		digest = h.Sum(nil)
	}
	switch pub := k.pub.(type) {
	case *rsa.PublicKey:
		if a.pss {
			return rsa.VerifyPSS(pub, a.hash, digest, sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash}) == nil
		}
		return rsa.VerifyPKCS1v15(pub, a.hash, digest, sig) == nil
	case *ecdsa.PublicKey:
		// RFC 7518 §3.4: R and S, each the curve's size, concatenated.
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return false
		}
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		return ecdsa.Verify(pub, digest, r, s)
	case ed25519.PublicKey:
		return ed25519.Verify(pub, signed, sig)
	}
	return false
}

// loadKeys fetches the JWKS (after discovery, when no JWKSURL is set).
// refresh is its only caller.
func (v *Verifier) loadKeys(ctx context.Context) error {
	u := v.o.JWKSURL
	if u == "" {
		d, err := v.discover(ctx)
		if err != nil {
			return err
		}
		if u = d.JWKSURI; u == "" {
			return errors.New("oauth2: the issuer publishes no jwks_uri")
		}
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	v.fetches.Add(1)
	if err := v.getJSON(ctx, u, &set); err != nil {
		return fmt.Errorf("oauth2: jwks: %w", err)
	}
	keys := map[string]*jwk{}
	var anon []*jwk
	for _, raw := range set.Keys {
		var j jwkJSON
		if json.Unmarshal(raw, &j) != nil {
			continue
		}
		k, err := parseJWK(j)
		if err != nil || k == nil {
			continue // one bad key does not spoil the others
		}
		if k.kid == "" {
			anon = append(anon, k)
		} else {
			keys[k.kid] = k
		}
	}
	if len(keys) == 0 && len(anon) == 0 {
		return errors.New("oauth2: jwks: no usable key")
	}
	v.mu.Lock()
	v.keys, v.anon, v.fetched = keys, anon, v.o.Now()
	v.mu.Unlock()
	return nil
}

// keyFetch is a JWKS fetch in flight, which every login that needs the
// keys meanwhile waits for instead of fetching again.
type keyFetch struct {
	done    chan struct{}
	err     error
	waiters int // logins waiting for it; under Verifier.mu
}

// refresh fetches the JWKS unless a fetch completed since the caller saw
// generation gen (then the caller looks again). Logins share one fetch in
// flight, and a failed fetch is not tried again before MinRefresh has
// passed: until then refresh returns its error at once. So neither a
// stale set nor forged kids make a request to an issuer that is down per
// token; such logins fail as the issuer being unavailable (an error that
// is not proxy.ErrAuthFailed: NO [UNAVAILABLE], no lockout), not as a
// wrong credential.
func (v *Verifier) refresh(ctx context.Context, gen uint64) error {
	v.mu.Lock()
	if v.gen != gen {
		v.mu.Unlock()
		return nil
	}
	f := v.inflight
	if f == nil {
		if v.fetchErr != nil && v.o.Now().Before(v.retryAt) {
			err := v.fetchErr
			v.mu.Unlock()
			return fmt.Errorf("oauth2: issuer unavailable, keys not fetched again before %s: %w", v.retryAt.UTC().Format(time.RFC3339), err)
		}
		f = &keyFetch{done: make(chan struct{})}
		v.inflight = f
		v.mu.Unlock()
		// The fetch is everyone's: the first login's end does not cancel
		// it (Timeout bounds it).
		err := v.loadKeys(context.WithoutCancel(ctx))
		v.mu.Lock()
		v.inflight, f.err = nil, err
		v.gen++
		if err != nil {
			v.fetchErr, v.retryAt = err, v.o.Now().Add(v.o.MinRefresh)
		} else {
			v.fetchErr = nil
		}
		v.mu.Unlock()
		close(f.done)
		return err
	}
	f.waiters++
	v.mu.Unlock()
	select {
	case <-f.done:
		return f.err
	case <-ctx.Done():
		return fmt.Errorf("oauth2: waiting for the issuer's keys: %w", ctx.Err())
	}
}

// key finds the key for kid, fetching the JWKS when it is stale or the
// kid is new (rotation), at most once per MinRefresh for new kids and
// after a failed fetch (refresh).
func (v *Verifier) key(ctx context.Context, kid, alg string) (*jwk, error) {
	now := v.o.Now()
	v.mu.Lock()
	stale := v.keys == nil && v.anon == nil || now.Sub(v.fetched) > v.o.JWKSCacheTTL
	gen := v.gen
	v.mu.Unlock()
	if stale {
		if err := v.refresh(ctx, gen); err != nil {
			return nil, err
		}
	}
	find := func() *jwk {
		v.mu.Lock()
		defer v.mu.Unlock()
		if kid != "" {
			if k := v.keys[kid]; k != nil && k.accepts(alg) {
				return k
			}
			return nil
		}
		// No kid: the one key that fits, if only one does.
		var found *jwk
		for _, k := range v.allKeys() {
			if k.accepts(alg) {
				if found != nil && found != k {
					return nil
				}
				found = k
			}
		}
		return found
	}
	if k := find(); k != nil {
		return k, nil
	}
	v.mu.Lock()
	// After a failed fetch the set may lack a rotated key: the kid is
	// not known to be wrong, and refresh says the issuer is unavailable.
	failing := v.fetchErr != nil
	retry := !stale && (failing || now.Sub(v.refreshed) >= v.o.MinRefresh)
	if retry && !failing {
		v.refreshed = now
	}
	gen = v.gen
	v.mu.Unlock()
	if retry {
		if err := v.refresh(ctx, gen); err != nil {
			return nil, err
		}
		if k := find(); k != nil {
			return k, nil
		}
	}
	return nil, refused("no key of the issuer fits (kid %q, alg %s)", truncate(kid, 64), alg)
}

// allKeys lists every key. Called with mu held.
func (v *Verifier) allKeys() []*jwk {
	out := append([]*jwk(nil), v.anon...)
	for _, k := range v.keys {
		out = append(out, k)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// header is the JWS protected header (RFC 7515 §4.1).
type header struct {
	Alg  string   `json:"alg"`
	Kid  string   `json:"kid"`
	Typ  string   `json:"typ"`
	Crit []string `json:"crit"`
}

// verifyJWT checks a compact JWS access token and its claims.
func (v *Verifier) verifyJWT(ctx context.Context, token string) (*claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, refused("not a JWT (%d parts)", len(parts))
	}
	hb, err := b64(parts[0])
	if err != nil {
		return nil, refused("JWT header is not base64url")
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil {
		return nil, refused("JWT header is not JSON")
	}
	if !v.algs[h.Alg] {
		// "none", HS256 and anything unlisted.
		return nil, refused("algorithm %q not allowed", truncate(h.Alg, 16))
	}
	if len(h.Crit) > 0 {
		// RFC 7515 §4.1.11: we understand no extension.
		return nil, refused("JWT has critical extensions")
	}
	if t := strings.ToLower(h.Typ); t != "" && t != "jwt" && t != "at+jwt" && t != "application/at+jwt" {
		// RFC 9068 §2.1: an ID token or another kind is not an access token.
		return nil, refused("JWT type %q is not an access token", truncate(h.Typ, 32))
	}
	sig, err := b64(parts[2])
	if err != nil || len(sig) == 0 {
		return nil, refused("JWT signature is not base64url")
	}
	k, err := v.key(ctx, h.Kid, h.Alg)
	if err != nil {
		return nil, err
	}
	if !k.verify(h.Alg, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, refused("bad signature")
	}
	pb, err := b64(parts[1])
	if err != nil {
		return nil, refused("JWT payload is not base64url")
	}
	cl := &claims{}
	if err := json.Unmarshal(pb, &cl.raw); err != nil || cl.raw == nil {
		return nil, refused("JWT payload is not a JSON object")
	}
	if cl.str("iss") != v.o.Issuer {
		return nil, refused("issuer mismatch")
	}
	if !contains(stringList(cl.raw["aud"]), v.o.Audience) {
		return nil, refused("audience mismatch")
	}
	if err := v.checkTimes(cl, true); err != nil {
		return nil, err
	}
	return cl, nil
}

// checkTimes checks exp (required when needExp), nbf and iat.
func (v *Verifier) checkTimes(cl *claims, needExp bool) error {
	now := v.o.Now()
	exp, ok := cl.time("exp")
	switch {
	case !ok && needExp:
		return refused("token has no expiry")
	case ok && !now.Before(exp.Add(v.o.Leeway)):
		return refused("token expired")
	}
	if nbf, ok := cl.time("nbf"); ok && now.Add(v.o.Leeway).Before(nbf) {
		return refused("token not valid yet")
	}
	if iat, ok := cl.time("iat"); ok && now.Add(v.o.Leeway).Before(iat) {
		return refused("token issued in the future")
	}
	return nil
}

// claims are a token's claims, as decoded JSON.
type claims struct{ raw map[string]any }

func (c *claims) str(k string) string { s, _ := c.raw[k].(string); return s }

// time reads a NumericDate (RFC 7519 §2).
func (c *claims) time(k string) (time.Time, bool) {
	f, ok := c.raw[k].(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// scopes reads "scope" (RFC 8693 §4.2, RFC 9068: space-separated) or
// "scp" (an array, as Hydra and Azure write it).
func (c *claims) scopes() []string {
	if s, ok := c.raw["scope"].(string); ok {
		return strings.Fields(s)
	}
	if s, ok := c.raw["scp"].(string); ok {
		return strings.Fields(s)
	}
	return stringList(c.raw["scp"])
}

// clientID reads client_id (RFC 9068 §2.2), else azp or cid.
func (c *claims) clientID() string {
	for _, k := range []string{"client_id", "azp", "cid"} {
		if s := c.str(k); s != "" {
			return s
		}
	}
	return ""
}

// stringList reads a string or an array of strings.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
