package pebbletest

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// dnsServer answers every A question with 127.0.0.1 and every other question
// with an empty NOERROR answer, over TCP (RFC 1035 §4.2.2: two-byte length
// prefix), which is how Pebble queries a -dnsserver. Just enough DNS for
// Pebble's validation authority to find the code under test on loopback.
type dnsServer struct {
	addr string
	ln   net.Listener
	wg   sync.WaitGroup

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func startDNS() (*dnsServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &dnsServer{addr: ln.Addr().String(), ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(s.accept)
	return s, nil
}

func (s *dnsServer) accept() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.serve(c)
		})
	}
}

// serve answers queries on one connection until the client closes it.
func (s *dnsServer) serve(c net.Conn) {
	var lenBuf [2]byte
	for {
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		resp, err := dnsAnswer(msg)
		if err != nil {
			return
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(resp)))
		if _, err := c.Write(append(out, resp...)); err != nil {
			return
		}
	}
}

func (s *dnsServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

const (
	dnsTypeA   = 1
	dnsClassIN = 1
)

// dnsAnswer builds the response to a one-question query (RFC 1035 §4.1).
func dnsAnswer(q []byte) ([]byte, error) {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil, errors.New("want a header and exactly one question")
	}
	// The question: a name of length-prefixed labels ending in a zero
	// length, then QTYPE and QCLASS. Queries carry no compression pointers.
	i := 12
	for {
		if i >= len(q) {
			return nil, errors.New("truncated name")
		}
		l := int(q[i])
		if l == 0 {
			i++
			break
		}
		if l&0xC0 != 0 {
			return nil, errors.New("compressed name in a question")
		}
		i += 1 + l
	}
	if i+4 > len(q) {
		return nil, errors.New("truncated question")
	}
	qtype := binary.BigEndian.Uint16(q[i : i+2])
	qclass := binary.BigEndian.Uint16(q[i+2 : i+4])
	question := q[12 : i+4]

	resp := make([]byte, 12, 12+len(question)+16)
	copy(resp[0:2], q[0:2]) // ID
	// QR=1, opcode copied, AA=1, RD copied; RA=0, RCODE=0 (NOERROR).
	resp[2] = 0x80 | q[2]&0x78 | 0x04 | q[2]&0x01
	resp[3] = 0
	binary.BigEndian.PutUint16(resp[4:6], 1) // QDCOUNT
	resp = append(resp, question...)
	if qtype == dnsTypeA && qclass == dnsClassIN {
		binary.BigEndian.PutUint16(resp[6:8], 1) // ANCOUNT
		resp = append(resp,
			0xC0, 12, // name: pointer to the question's name
			0, dnsTypeA, 0, dnsClassIN,
			0, 0, 0, 1, // TTL 1 s
			0, 4, 127, 0, 0, 1)
	}
	return resp, nil
}
