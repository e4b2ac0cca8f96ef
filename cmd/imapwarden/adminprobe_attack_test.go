package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/imapwarden/imapwarden/internal/testenv"
)

// TestAttackAdminProbesStarvedByIdleConnections: admin.max_connections
// (64) is one pool for everyone, and /healthz needs no token. One client
// with no token takes every slot with 64 keep-alive connections, each
// kept by a GET /healthz within idle_timeout; from then on every new
// connection is closed at accept, the kubelet's liveness and readiness
// probes (a new connection each) included. With the Helm chart, whose
// admin port any pod of the cluster reaches, the kubelet takes the pod
// out of service and restarts it, ending every IMAP session, for as
// long as the client keeps its slots: an unauthenticated outage. The
// bound must not let one peer shut the probes out (a bound per address,
// idle connections shed first, or probes kept apart).
func TestAttackAdminProbesStarvedByIdleConnections(t *testing.T) {
	f := startAdminFixture(t, "")
	get := func(c net.Conn, r *bufio.Reader, close bool) (int, error) {
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		hdr := ""
		if close {
			hdr = "Connection: close\r\n"
		}
		if _, err := fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: imapwarden\r\n%s\r\n", hdr); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	// The default admin.max_connections, all from one address, no token.
	for i := range defaultAdminTimeouts.MaxConnections {
		c, err := net.Dial("tcp", f.admin)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		if code, err := get(c, bufio.NewReader(c), false); err != nil || code != http.StatusOK {
			t.Fatalf("holding connection %d: %d %v", i, code, err)
		}
	}
	// The kubelet's probe: a new connection, one request.
	probe := func(path string) (int, error) {
		c, err := net.Dial("tcp", f.admin)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testenv.IOTimeout()))
		if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 10.0.0.7:9143\r\nUser-Agent: kube-probe/1.31\r\nConnection: close\r\n\r\n", path); err != nil {
			return 0, err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, err := probe(path); err != nil || code != http.StatusOK {
			t.Errorf("probe %s while one tokenless client holds %d idle connections: status %d, %v (the kubelet restarts the pod)",
				path, len(held), code, err)
		}
	}
}
