package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHTTPPooledConnClosedByServer sends POSTs through lb to a server that
// answers each request with a Content-Length and then closes the
// connection without saying Connection: close. lb pools the connection
// after the response, and the server's FIN comes microseconds later: lb
// must not send a request on a connection it knows closed, and a request
// that meets the close in flight (the server's kernel resets it: the
// server never read it) goes again on a fresh connection, POST included.
// Every POST gets its answer, and the server gets each one exactly once.
func TestHTTPPooledConnClosedByServer(t *testing.T) {
	var (
		mu   sync.Mutex
		seen = map[string]int{} // POST id -> times the server received it
		bad  []string           // requests the server got wrong
	)
	closer := startRawBackend(t, "closer", func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		id := req.Header.Get("X-Post-Id")
		mu.Lock()
		seen[id]++
		if req.Method != "POST" || string(body) != "body of "+id {
			bad = append(bad, fmt.Sprintf("%s %s with body %q", req.Method, id, body))
		}
		mu.Unlock()
		// An answer with a Content-Length, then the close (the handler's
		// return), without Connection: close.
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(id), id)
	})
	p, addr := startHTTPLB(t, "", "", "[[backend]]\nname = \"app\"\n"+closer.line())

	// Two keep-alive clients, 50 POSTs each, at the same time: a Go client
	// and a raw connection that writes one request after another.
	const perClient = 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	type result struct {
		client string
		failed []string
	}
	results := make(chan result, 2)
	c := newHTTPClient(t)
	go func() {
		r := result{client: "Go client"}
		for i := range perClient {
			id := fmt.Sprintf("go-%d", i)
			req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/post", strings.NewReader("body of "+id))
			if err != nil {
				r.failed = append(r.failed, err.Error())
				continue
			}
			req.Header.Set("X-Post-Id", id)
			resp, err := c.Do(req)
			if err != nil {
				r.failed = append(r.failed, fmt.Sprintf("%s: %v", id, err))
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || string(body) != id {
				r.failed = append(r.failed, fmt.Sprintf("%s: %d %q %v", id, resp.StatusCode, body, err))
			}
		}
		results <- r
	}()
	go func() {
		r := result{client: "raw client"}
		var (
			c  net.Conn
			br *bufio.Reader
		)
		defer func() {
			if c != nil {
				c.Close()
			}
		}()
		for i := range perClient {
			id := fmt.Sprintf("raw-%d", i)
			if c == nil {
				var err error
				if c, err = net.DialTimeout("tcp", addr, 5*time.Second); err != nil {
					r.failed = append(r.failed, fmt.Sprintf("%s: %v", id, err))
					continue
				}
				br = bufio.NewReader(c)
			}
			dl, _ := ctx.Deadline()
			_ = c.SetDeadline(dl)
			body := "body of " + id
			_, err := fmt.Fprintf(c, "POST /post HTTP/1.1\r\nHost: lb\r\nX-Post-Id: %s\r\nContent-Length: %d\r\n\r\n%s", id, len(body), body)
			var resp rawResponse
			if err == nil {
				resp, err = tryReadRaw(c, br, "POST")
			}
			if err != nil || resp.StatusCode != 200 || resp.body != id {
				if err == nil {
					err = fmt.Errorf("%d %q", resp.StatusCode, resp.body)
				}
				r.failed = append(r.failed, fmt.Sprintf("%s: %v", id, err))
			}
			if err != nil || resp.Close {
				// lb closes the connection after an error of its own: the
				// next request goes on a new one.
				c.Close()
				c = nil
			}
		}
		results <- r
	}()
	failed := 0
	for range 2 {
		select {
		case r := <-results:
			if len(r.failed) > 0 {
				failed += len(r.failed)
				t.Errorf("%s: %d of %d POSTs failed, the first: %s", r.client, len(r.failed), perClient, r.failed[0])
			}
		case <-time.After(90 * time.Second):
			t.Fatal("the clients did not finish within 90s")
		}
	}

	mu.Lock()
	defer mu.Unlock()
	for _, b := range bad {
		t.Errorf("the server received %s", b)
	}
	twice, missing := 0, 0
	for _, prefix := range []string{"go", "raw"} {
		for i := range perClient {
			switch n := seen[fmt.Sprintf("%s-%d", prefix, i)]; {
			case n > 1:
				twice++
				t.Errorf("the server received POST %s-%d %d times", prefix, i, n)
			case n == 0:
				missing++
			}
		}
	}
	if len(seen) != 2*perClient {
		t.Errorf("the server received %d distinct POSTs, want %d", len(seen), 2*perClient)
	}
	retried := 0
	for _, l := range p.logLines(t, "request") {
		if r, _ := l["retries"].(float64); r > 0 {
			retried++
		}
	}
	t.Logf("%d of %d POSTs failed, %d never reached the server, %d reached it more than once; %d sent again on a fresh connection (lb's log); the server accepted %d connections",
		failed, 2*perClient, missing, twice, retried, closer.accepted.Load())
}

// TestHTTPPooledConnClosedByServerGET: GETs, which lb takes pooled
// connections for without checking them first (idlePool.get: a request it
// can send again at no cost), through lb to the server of
// TestHTTPPooledConnClosedByServer, which closes each connection after its
// answer without saying so. Every GET gets its answer: the first that
// meets a closed connection goes again on a fresh one, and from then on
// lb checks each pooled connection before reuse, so few GETs need to.
func TestHTTPPooledConnClosedByServerGET(t *testing.T) {
	closer := startRawBackend(t, "closer", func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
	})
	p, addr := startHTTPLB(t, "", "", "[[backend]]\nname = \"app\"\n"+closer.line())
	const clients, perClient = 4, 50
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	failures := make(chan []string, clients)
	c := newHTTPClient(t)
	for n := range clients {
		go func() {
			var failed []string
			for i := range perClient {
				path := fmt.Sprintf("/get-%d-%d", n, i)
				req, err := http.NewRequestWithContext(ctx, "GET", "http://"+addr+path, nil)
				if err != nil {
					failed = append(failed, err.Error())
					continue
				}
				resp, err := c.Do(req)
				if err != nil {
					failed = append(failed, fmt.Sprintf("%s: %v", path, err))
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || string(body) != path {
					failed = append(failed, fmt.Sprintf("%s: %d %q %v", path, resp.StatusCode, body, err))
				}
			}
			failures <- failed
		}()
	}
	for range clients {
		select {
		case failed := <-failures:
			if len(failed) > 0 {
				t.Errorf("%d of %d GETs failed, the first: %s", len(failed), perClient, failed[0])
			}
		case <-time.After(90 * time.Second):
			t.Fatal("the clients did not finish within 90s")
		}
	}
	retried := 0
	for _, l := range p.logLines(t, "request") {
		if r, _ := l["retries"].(float64); r > 0 {
			retried++
		}
	}
	t.Logf("%d of %d GETs sent again on a fresh connection; the server accepted %d connections", retried, clients*perClient, closer.accepted.Load())
	if retried > clients*perClient/4 {
		t.Errorf("%d of %d GETs were sent again: lb went on reusing pooled connections unchecked after the first closed one", retried, clients*perClient)
	}
}
