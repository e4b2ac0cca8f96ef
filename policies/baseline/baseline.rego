# Policy 1, baseline: TLS for everything, COMPRESS refused, and the
# networks in data.baseline.blocked_networks refused at connect.
#
# Credentials and mail never cross a client network in clear: a login, a
# route or a command without TLS is denied, also from networks the listener
# trusts with plaintext (PlaintextAuthFrom), unless data.baseline lists them
# too. The connect point is left alone: on a STARTTLS listener TLS starts
# after the greeting. Commands need no check of their own: a session only
# reaches them through an auth decision, and TLS cannot end before logout.
#
# COMPRESS=DEFLATE (RFC 4978) would hide every later command from the
# inspecting relay, so it is refused unless the proxy terminates it
# (data.baseline.proxy_terminates_compress).
package imapwarden

deny contains {
	"policy": "baseline",
	"code": "NOPERM",
	"reason": "Connections from this network are not accepted",
} if {
	input.point == "connect"
	some cidr in data.baseline.blocked_networks
	net.cidr_contains(cidr, input.session.client_ip)
}

deny contains {
	"policy": "baseline",
	"code": "PRIVACYREQUIRED",
	"reason": "TLS is required",
} if {
	input.point != "connect"
	not input.session.tls
	not plaintext_trusted
}

plaintext_trusted if {
	some cidr in data.baseline.plaintext_networks
	net.cidr_contains(cidr, input.session.client_ip)
}

inspect contains "COMPRESS" if not data.baseline.proxy_terminates_compress

deny contains {
	"policy": "baseline",
	"code": "CANNOT",
	"reason": "COMPRESS is not available",
} if {
	input.point == "command"
	input.command.name == "COMPRESS"
	not data.baseline.proxy_terminates_compress
}
