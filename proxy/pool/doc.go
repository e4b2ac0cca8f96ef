// Package pool spreads a backend's logins over several servers, checks
// their health, lets an operator drain them, and routes logins by a
// lookup service (nginx mail auth_http) or a directory's hint.
//
// Implementation notes — invariants a reader must keep:
//
//   - A Pool is one configured backend: a template proxy.Backend (security,
//     TLS, login mode) and its servers. It is the backend's proxy.Balancer:
//     at each login it picks a server, hears how connecting went, and on a
//     failure the proxy asks it for the next one. Sessions already open are
//     never moved; only new logins fail over.
//   - Affinity: a user goes to the available server with the highest
//     weighted rendezvous score of (user, server name) (Thaler & Ravishankar;
//     score = -weight / ln(hash)), so that a user's sessions share one
//     server and its index locks stay local, as Dovecot's director does.
//     When a server leaves, only its users move; when it returns, they
//     move back at their next login. The hash is stable across processes
//     and restarts: a fleet of proxies agrees without talking. With
//     MaxLoad, a server already over its share goes to the user's next
//     server (rendezvous with bounded load).
//   - Health: a server starts unknown (it takes logins); its first active
//     check decides up or down; afterwards Fall consecutive failures
//     (active checks or failed connections of sessions, the passive check)
//     take it down and Rise consecutive successful active checks bring it
//     back. A failed connection triggers an active check at once. A down,
//     draining or disabled server takes no new logins.
//   - State outlives a reload: a Monitor keeps each server's health, admin
//     state and session count across SIGHUP for servers whose backend,
//     name and address are unchanged (Monitor.Apply).
//   - Routing hints from outside (a lookup service's Auth-Server, a
//     directory's mailHost) are resolved against the configured backends
//     and servers only: an address that no backend lists is refused,
//     never dialled (Set.Resolve). Failures of the lookup service fail
//     closed: the login gets NO [UNAVAILABLE].
//   - Nothing here logs or sends a password, except Auth-Pass to the
//     lookup service when configured to (LookupOptions.SendPassword); cache keys
//     hold a keyed hash of it, never the password.
package pool
