// Package tlsterm terminates TLS toward IMAP clients and originates it toward
// backends.
//
// Implementation notes, the invariants a change must keep:
//
//   - The client-facing certificate always comes from [tls.Config.GetCertificate],
//     backed by an atomically swapped set. A reload builds a whole new set off to
//     the side and swaps it in only if every file loaded; handshakes in progress
//     and established sessions keep the certificate they already have. ACME
//     (certmagic) will plug in behind the same callback.
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
//   - This package imports no other package of imapwarden (DESIGN §2).
package tlsterm
