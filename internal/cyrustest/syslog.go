package cyrustest

import (
	"bytes"
	"net"
	"os"
	"sync"
)

// syslogSink is the /dev/log of a server's private /dev: a unix datagram
// socket whose messages it appends, one per line, to a file. It lives as long
// as the Server, across Kill and Restart.
type syslogSink struct {
	conn *net.UnixConn
	out  *os.File
	wg   sync.WaitGroup
}

// listenSyslog binds a datagram socket at path, writable by every user (the
// servers log as "cyrus"), and copies what arrives to logPath.
func listenSyslog(path, logPath string) (*syslogSink, error) {
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		out.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		conn.Close()
		out.Close()
		return nil, err
	}
	s := &syslogSink{conn: conn, out: out}
	s.wg.Add(1)
	go s.run()
	return s, nil
}

func (s *syslogSink) run() {
	defer s.wg.Done()
	buf := make([]byte, 64<<10)
	for {
		n, err := s.conn.Read(buf)
		if err != nil {
			return // closed
		}
		_, _ = s.out.Write(formatSyslog(buf[:n]))
	}
}

// formatSyslog turns one RFC 3164 datagram, "<PRI>Mmm dd hh:mm:ss tag[pid]:
// msg", into a log line without the priority.
func formatSyslog(msg []byte) []byte {
	if len(msg) > 0 && msg[0] == '<' {
		if i := bytes.IndexByte(msg, '>'); i > 0 && i <= 4 {
			msg = msg[i+1:]
		}
	}
	msg = bytes.TrimRight(msg, "\r\n\x00")
	line := make([]byte, 0, len(msg)+1)
	return append(append(line, msg...), '\n')
}

// Close stops reading and closes the log file.
func (s *syslogSink) Close() {
	s.conn.Close()
	s.wg.Wait()
	s.out.Close()
}
