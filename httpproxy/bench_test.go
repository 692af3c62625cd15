package httpproxy

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
	"lb/proxy"
	"lb/rules"
	"lb/table"
)

// rawHTTPServer answers every request on a connection with resp; it reads
// and writes through fixed buffers, so that it allocates nothing per
// request.
func rawHTTPServer(tb testing.TB, resp []byte) string {
	return serveEach(tb, func(c net.Conn) {
		buf := make([]byte, 4096)
		var have []byte
		for {
			n, err := c.Read(buf[len(have):])
			if err != nil {
				return
			}
			have = buf[:len(have)+n]
			for {
				i := bytes.Index(have, []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
				have = have[:copy(buf, have[i+4:])]
			}
		}
	})
}

// serveEach listens on loopback until the test ends and serves each
// connection with handle, in a goroutine of its own, closing it after.
// It returns the address.
func serveEach(tb testing.TB, handle func(c net.Conn)) string {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkProxiedRequest sends keep-alive requests through an HTTP
// frontend to a server: lb allocates nothing per request.
func BenchmarkProxiedRequest(b *testing.B) { benchProxied(b, nil) }

// BenchmarkProxiedRequestRateLimited is BenchmarkProxiedRequest through a
// per-client rate limit: each request is counted in a table, keyed by a
// header, and a rule reads its rate; still nothing allocated.
func BenchmarkProxiedRequestRateLimited(b *testing.B) {
	benchProxied(b, func(f *Frontend) {
		t := table.New(table.Spec{Name: "per_client", Size: 1000, Expire: time.Minute, Period: 10 * time.Second})
		cond, err := rules.CompileCond(rules.CondSpec{Name: "too_fast", Table: "per_client", Figure: "http_req_rate", Above: 1 << 40})
		if err != nil {
			b.Fatal(err)
		}
		r, err := rules.CompileRule(rules.RuleSpec{When: "too_fast", Action: "deny", Status: 429}, map[string]*rules.Cond{"too_fast": cond})
		if err != nil {
			b.Fatal(err)
		}
		f.Policy = &Policy{Tracks: []proxy.Track{{Table: t, Kind: proxy.KeyHeader, Name: "User-Agent"}}, ReqRules: []*rules.Rule{r}}
	})
}

func benchProxied(b *testing.B, configure func(f *Frontend)) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
	srv := balancer.NewServer("s1", rawHTTPServer(b, resp), 1, 0, false)
	pool, err := balancer.NewPool("app", "roundrobin", []*balancer.Server{srv})
	if err != nil {
		b.Fatal(err)
	}
	be := NewBackend(&proxy.Backend{Pool: pool, ConnectTimeout: time.Second, ServerTimeout: time.Minute})
	f := &Frontend{Name: "web", Default: be, RequestIDHeader: "X-Request-Id", RequestTimeout: 10 * time.Second,
		KeepAliveTimeout: time.Minute, ClientTimeout: time.Minute, Log: zerolog.Nop()}
	if configure != nil {
		configure(f)
	}
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	var pf proxy.Frontend
	b.Cleanup(func() { ln.Close(); pf.Wait() })
	go func() {
		for {
			c, err := ln.AcceptTCP()
			if err != nil {
				return
			}
			go f.ServeConn(pf.NewConn(c))
		}
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	req := []byte("GET /bench HTTP/1.1\r\nHost: lb.test\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	// lb's response: the server's, with X-Forwarded-* handled; read
	// until its body, "hello", has come.
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		have := 0
		for !bytes.HasSuffix(buf[:have], []byte("hello")) {
			n, err := c.Read(buf[have:])
			if err != nil {
				b.Fatalf("reading the response: %v (%q)", err, buf[:have])
			}
			have += n
		}
	}
	roundTrip()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
	_ = io.Discard
}
