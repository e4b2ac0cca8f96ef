// Package tlsterm terminates TLS toward IMAP clients and originates it toward
// backends.
//
// Implementation notes, the invariants a change must keep:
//
//   - The client-facing certificate always comes from [tls.Config.GetCertificate],
//     backed by an atomically swapped set. A reload builds a whole new set off to
//     the side and swaps it in only if every file loaded; handshakes in progress
//     and established sessions keep the certificate they already have.
//   - ACME plugs in behind the same callback as a [Manager] (tlsterm/acme,
//     certmagic). Files win for the names they cover, the Manager gets the
//     rest, then the default. This package imports no ACME code: the proxy
//     imports it for [Describe] and must stay free of certmagic (ARCHITECTURE.md §4).
//   - A hello offering exactly "acme-tls/1" is an ACME TLS-ALPN-01 validation
//     (RFC 8737): it gets the challenge certificate if one is pending, over
//     TLS 1.3 only, and the handshake is made to fail on our side after our
//     flight is sent, so such a connection never becomes an IMAP session.
//   - Implicit TLS (port 993) is the recommended way to reach a mail server
//     (RFC 8314 §3); the same config serves STARTTLS on port 143.
//   - ALPN: the only protocol we speak is "imap" (RFC 7301, IANA registry).
//     A client that offers ALPN without "imap" is refused with a
//     no_application_protocol alert (RFC 7301 §3.2), whatever NextProtos says;
//     this closes the cross-protocol attacks of ALPACA (Brinkmann et al.,
//     USENIX Security 2021). A client that offers no ALPN at all is accepted:
//     most IMAP clients send none.
//   - SNI (RFC 6066 §3) picks among certificates by their DNS SANs, exact names
//     first, then a wildcard covering exactly one left-most label
//     (RFC 6125 §6.4.3). Without a match the first certificate is the default,
//     unless StrictSNI asks for an unrecognized_name alert.
//   - TLS 1.2 is the floor (RFC 8996 deprecates 1.0 and 1.1, RFC 9325 §3.1.1);
//     on TLS 1.2 only ECDHE key exchange with AEAD ciphers is offered.
//   - Session ticket keys are ours, not crypto/tls's automatic ones: rotated
//     every TicketKeyRotation (lazily, at the first handshake after it is due),
//     the previous key kept one more period, and derived per client-certificate
//     policy so that tickets never cross between listeners of different
//     policies ([Server.ListenerConfig]).
//   - Time-based work needs no goroutine of ours: ticket rotation happens in
//     the handshake path, expiry warnings in Watch; only a Manager runs
//     background work (certmagic's renewals), stopped by Close.
//   - This package imports no other package of imapwarden (ARCHITECTURE.md §4).
package tlsterm
