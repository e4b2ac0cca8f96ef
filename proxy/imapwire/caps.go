package imapwire

import "strings"

// Cap is a capability the proxy knows (RFC 9051 §7.2.2), as a bit.
type Cap uint64

// Capabilities the proxy can parse. Those the grammar depends on have a
// bit; the others (I18NLEVEL=, RIGHTS=, ...) change nothing the proxy
// reads and pass without one.
const (
	CapIMAP4rev2 Cap = 1 << iota
	CapIDLE
	CapNAMESPACE
	CapUIDPLUS
	CapLITERALPlus
	CapLITERALMinus
	CapBINARY
	CapMOVE
	CapUNSELECT
	CapID
	CapENABLE
	CapCONDSTORE
	CapQRESYNC
	CapESEARCH
	CapSEARCHRES
	CapWITHIN
	CapSORT
	CapSORTDISPLAY
	CapESORT
	CapTHREAD
	CapLISTEXTENDED
	CapLISTSTATUS
	CapSPECIALUSE
	CapCREATESPECIALUSE
	CapMULTIAPPEND
	CapCATENATE
	CapACL
	CapQUOTA
	CapNOTIFY
	CapMETADATA
	CapMETADATASERVER
	CapSAVEDATE
	CapOBJECTID
	CapPREVIEW
	CapSNIPPET
	CapLISTMYRIGHTS
	CapSTATUSSIZE
	CapUTF8ACCEPT
	CapSEARCHFUZZY
	CapAPPENDLIMIT
	capOther // relayed, no grammar depends on it
)

// capTable lists the capabilities the relay lets through after login
// (ARCHITECTURE.md §7: never an extension the proxy cannot parse). A name ending in
// "=" stands for every value. Everything else is dropped: STARTTLS,
// LOGINDISABLED, AUTH= and SASL-IR belong to the front end; COMPRESS= is
// the proxy's own; referrals would send the client around the proxy
// (RFC 2221, RFC 2193); CONTEXT= needs CANCELUPDATE and unsolicited
// ESEARCH updates, URLAUTH a URL the proxy never sees fetched.
var capTable = map[string]Cap{
	"IMAP4REV1": capOther, "IMAP4REV2": CapIMAP4rev2, "IDLE": CapIDLE, "NAMESPACE": CapNAMESPACE,
	"UIDPLUS": CapUIDPLUS, "LITERAL+": CapLITERALPlus, "LITERAL-": CapLITERALMinus, "BINARY": CapBINARY,
	"MOVE": CapMOVE, "UNSELECT": CapUNSELECT, "CHILDREN": capOther, "ID": CapID, "ENABLE": CapENABLE,
	"CONDSTORE": CapCONDSTORE, "QRESYNC": CapQRESYNC, "ESEARCH": CapESEARCH, "SEARCHRES": CapSEARCHRES,
	"WITHIN": CapWITHIN, "SORT": CapSORT, "SORT=DISPLAY": CapSORTDISPLAY, "ESORT": CapESORT,
	"LIST-EXTENDED": CapLISTEXTENDED, "LIST-STATUS": CapLISTSTATUS, "SPECIAL-USE": CapSPECIALUSE,
	"CREATE-SPECIAL-USE": CapCREATESPECIALUSE, "MULTIAPPEND": CapMULTIAPPEND, "CATENATE": CapCATENATE,
	"ACL": CapACL, "QUOTA": CapQUOTA, "NOTIFY": CapNOTIFY, "METADATA": CapMETADATA,
	"METADATA-SERVER": CapMETADATASERVER, "SAVEDATE": CapSAVEDATE, "OBJECTID": CapOBJECTID,
	"PREVIEW": CapPREVIEW, "LIST-MYRIGHTS": CapLISTMYRIGHTS, "STATUS=SIZE": CapSTATUSSIZE,
	"UTF8=ACCEPT": CapUTF8ACCEPT, "UTF8=ONLY": CapUTF8ACCEPT, "URL-PARTIAL": capOther,
	"SEARCH=FUZZY": CapSEARCHFUZZY,
	// Prefixes (value varies).
	"THREAD=": CapTHREAD, "I18NLEVEL=": capOther, "RIGHTS=": capOther, "QUOTA=": capOther,
	"APPENDLIMIT=": CapAPPENDLIMIT, "APPENDLIMIT": CapAPPENDLIMIT, "SNIPPET=": CapSNIPPET,
	"PREVIEW=": capOther, "SORT=": capOther,
}

// RelayCapability reports whether a backend capability may reach the
// client, and its bit. It does not allocate for names up to 64 bytes.
func RelayCapability(c []byte) (Cap, bool) {
	var buf [64]byte
	if len(c) == 0 || len(c) > len(buf) {
		return 0, false
	}
	u := buf[:len(c)]
	for i, b := range c {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		u[i] = b
	}
	if bit, ok := capTable[string(u)]; ok { // no allocation: map lookup by []byte conversion
		return bit, true
	}
	for i := range u {
		if u[i] == '=' {
			bit, ok := capTable[string(u[:i+1])]
			return bit, ok
		}
	}
	return 0, false
}

// ParseCaps returns the bits of the relayed capabilities in list.
func ParseCaps(list []string) Cap {
	var caps Cap
	for _, c := range list {
		if bit, ok := RelayCapability([]byte(c)); ok {
			caps |= bit
		}
	}
	return caps
}

// CapByName returns the bit of a capability name (any case).
func CapByName(name string) Cap {
	bit, _ := RelayCapability([]byte(strings.ToUpper(name)))
	return bit
}
