// Package inflate is Go's compress/flate decompressor (Go 1.26, inflate.go
// and dict_decoder.go, under Go's BSD license in LICENSE), changed in one
// place: finishBlock yields decoded bytes at every block end. The standard
// reader only yields them at a stored block (Z_SYNC_FLUSH) or a full
// window, so a COMPRESS=DEFLATE client that flushes with Z_PARTIAL_FLUSH
// (mbsync) stalls the proxy's reader; klauspost/compress behaves the same.
package inflate

// Constants of compress/flate that the copied files use.
const (
	endBlockMarker = 256
	maxMatchOffset = 1 << 15
)
