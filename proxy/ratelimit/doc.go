// Package ratelimit enforces imapwarden's rate limits, brute-force
// lockouts and exfiltration caps (ARCHITECTURE.md §12): Limiter implements
// proxy.Limiter.
//
// Implementation notes, the invariants a reader must keep:
//
//   - Nothing a client can vary before login may grow memory without bound.
//     Keys are uint64 hashes under a per-process random seed; connection
//     rates, failure records and per-user buckets count against
//     Options.MaxTrackedKeys, and a full shard evicts the sampled entry
//     closest to expiry (rate buckets before failure records, so a flood of
//     new IPs wears down its own kind first). A user name kept for the
//     admin listing is cut to 128 bytes.
//   - Command and Login are on hot paths: in-process state only (per-user
//     command rates are never shared; fetch caps are mirrored from Redis by
//     Fetched), no allocation without Redis (the login's place lives in
//     its connection's state). Login with Redis costs one round trip (one
//     script reads the three failure records and takes the place).
//   - A login let through holds a place in its failure records until its
//     result (places.go): a record with n of its limit's failures has room
//     for limit - n in flight, a failure takes its place in one step, and
//     a login over the room waits (never refused for it) until a place is
//     given back or its context ends. Every waiter is woken by a channel
//     closed at the record's change, or polls Redis: none is left behind.
//   - A failed login and a lockout look alike to the client: code
//     AUTHENTICATIONFAILED (RFC 5530 §3), the same delay
//     (LoginFailureDelay) and, by default, the same text. Whether the user
//     exists plays no part in any count or delay. A locked user stays
//     reachable from IPs that never failed for them unless
//     UserLockoutAllIPs. A login that names no user (a bearer token
//     without one) counts against its IP only (failRecords): never one
//     record all such logins share.
//   - Rates are GCRA (one timestamp per bucket, expiring by itself); the
//     Redis scripts do the same arithmetic as gcra.take in microseconds, on
//     the caller's clock, all or nothing across the buckets of one call.
//   - An "ip" key is a host, not an address: the client IP unmapped, an
//     address of an IPv4Translators prefix the IPv4 client embedded in it,
//     then masked to IPBitsV4/IPBitsV6 (/32 and /64; Hosts.Of). A host
//     given an IPv6 /64 picks any address in it, and must not get a fresh
//     failure counter per address; the IPv4 clients of a translator must
//     not share one. Embeddings the client picks (6to4, Teredo) are IPv6.
//     A subnet (SubnetBitsV4/V6, /24 and /48) is never narrower than a host.
//   - Limit and Key of a LimitResult are fixed words (metric labels): never
//     a user name or an address.
//   - With Redis down, calls are not attempted until a background ping
//     succeeds; meanwhile FailOpen decides in-process and FailClosed refuses
//     logins and APPENDs (NO [UNAVAILABLE]). Connections and the commands of
//     open sessions go on in both modes.
//   - Lockouts outlive Redis (mirror.go): each instance mirrors the failure
//     records Redis shows it (at login checks, at failures, and the whole
//     lockout index every LockoutSyncInterval) and enforces them while
//     Redis is down; failures counted during an outage, and mirrored
//     lockouts in force, are written back when Redis answers (merged by
//     maximum, so nothing is shortened). While Redis answers it is the
//     authority: a mirror it no longer holds is dropped.
package ratelimit
