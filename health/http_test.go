package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestHTTPChecks(t *testing.T) {
	t.Parallel()
	status := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			io.WriteString(w, body)
		}
	}
	slow := func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}
	cases := []struct {
		name    string
		handler http.HandlerFunc // nil: raw, below
		raw     func(net.Conn)   // answers each connection by hand
		dead    bool
		expect  [][2]int
		body    string
		want    string // the reason it goes down; "" means it stays up
	}{
		{name: "200 stays up", handler: status(200, "")},
		{name: "204 passes the default expect", handler: status(204, "")},
		{name: "302 passes the default expect", handler: status(302, "")},
		{name: "503", handler: status(503, ""), want: "HTTP status 503, want 200-399"},
		{name: "404", handler: status(404, ""), want: "HTTP status 404, want 200-399"},
		{name: "expect 200-200 gets 200", handler: status(200, ""), expect: [][2]int{{200, 200}}},
		{name: "expect 200-200 gets 204", handler: status(204, ""), expect: [][2]int{{200, 200}}, want: "HTTP status 204, want 200"},
		{name: "expect two ranges gets 404", handler: status(404, ""), expect: [][2]int{{200, 299}, {404, 404}}},
		{name: "expect two ranges gets 500", handler: status(500, ""), expect: [][2]int{{200, 299}, {404, 404}},
			want: "HTTP status 500, want 200-299 or 404"},
		{name: "right body", handler: status(200, "all ok here"), body: "ok"},
		{name: "wrong body", handler: status(200, "nope"), body: "ok", want: `body does not contain "ok"`},
		{name: "body beyond 64 KiB", handler: status(200, strings.Repeat("x", 64<<10)+"ok"), body: "ok",
			want: `body does not contain "ok"`},
		{name: "slow response", handler: slow, want: "timeout"},
		{name: "garbage", raw: func(c net.Conn) { io.WriteString(c, "garbage\r\n\r\n") },
			want: `bad HTTP response: malformed HTTP response "garbage"`},
		{name: "closed without a response", raw: func(c net.Conn) {}, want: "bad HTTP response: connection closed early"},
		{name: "refused", dead: true, want: "connect refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var addr string
			var hits func() int64
			switch {
			case tc.dead:
				addr, hits = deadAddr(t), func() int64 { return 1 << 10 }
			case tc.raw != nil:
				rs := rawServer(t, tc.raw)
				addr, hits = rs.addr(), rs.n.Load
			default:
				hs := serveHTTP(t, tc.handler)
				addr, hits = hs.addr(), hs.n.Load
			}
			pool, srv := newPool(t, "s1")
			set := Settings{
				Type: TypeHTTP, Addr: addr, Path: "/health", Expect: tc.expect, Body: tc.body, Rise: 2, Fall: 2,
				Interval: 30 * time.Millisecond, FastInterval: 20 * time.Millisecond,
				DownInterval: 30 * time.Millisecond, Timeout: 150 * time.Millisecond,
			}
			logs, log := newLog()
			c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{Up: true}}}, log)
			start(t, c)
			if tc.want == "" {
				waitFor(t, 2*time.Second, "four checks", func() bool { return hits() >= 4 })
				if sn := state(t, c, "s1"); !srv[0].Up() || sn.LastReason != "" {
					t.Fatalf("a good server: up = %v, %+v", srv[0].Up(), sn)
				}
				if got := logs.transitions(t); len(got) != 0 {
					t.Errorf("state changes logged: %q", got)
				}
				return
			}
			got := logs.waitTransitions(t, 1)
			if srv[0].Up() {
				t.Error("server logged down is up")
			}
			if got := state(t, c, "s1").LastReason; got != tc.want {
				t.Errorf("reason = %q, want %q", got, tc.want)
			}
			want := "server app/s1 is DOWN: " + tc.want + ", 2/2 checks failed"
			if len(got) != 1 || got[0] != want {
				t.Errorf("logs = %q, want %q", got, want)
			}
		})
	}
}

func TestHTTPRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name                 string
		method, path, host   string
		wantMethod, wantHost string
		wantURI              string
	}{
		{name: "defaults", wantMethod: "GET", wantURI: "/", wantHost: "127.0.0.1"},
		{name: "all set", method: "HEAD", path: "/health?full=1", host: "app.example",
			wantMethod: "HEAD", wantURI: "/health?full=1", wantHost: "app.example"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := make(chan *http.Request, 10)
			hs := serveHTTP(t, func(w http.ResponseWriter, r *http.Request) { got <- r })
			pool, srv := newPool(t, "s1")
			set := tcpSettings(hs.addr())
			set.Type, set.Method, set.Path, set.Host = TypeHTTP, tc.method, tc.path, tc.host
			_, log := newLog()
			c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: set, Start: State{}}}, log)
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			c.ColdStart(ctx)
			if !srv[0].Up() {
				t.Fatalf("server down: %+v", state(t, c, "s1"))
			}
			r := <-got
			if r.Method != tc.wantMethod || r.RequestURI != tc.wantURI || r.Host != tc.wantHost || r.Proto != "HTTP/1.1" {
				t.Errorf("request %s %s %s Host %s, want %s %s HTTP/1.1 Host %s",
					r.Method, r.RequestURI, r.Proto, r.Host, tc.wantMethod, tc.wantURI, tc.wantHost)
			}
			if ua := r.UserAgent(); ua != "lb-health-check" {
				t.Errorf("User-Agent %q", ua)
			}
			if !r.Close {
				t.Errorf("no Connection: close (header %q)", r.Header.Get("Connection"))
			}
		})
	}
}

func TestBadSettings(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		set  Settings
		want string
	}{
		{"unknown type", Settings{Type: "udp"}, `bad check settings: unknown check type "udp" (want "tcp" or "http")`},
		{"relative path", Settings{Type: TypeHTTP, Path: "health"}, `bad check settings: path "health" does not start with /`},
		{"address without a port", Settings{Type: TypeHTTP, Addr: "127.0.0.1"},
			`bad check settings: check address "127.0.0.1": address 127.0.0.1: missing port in address`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.set.Addr == "" {
				tc.set.Addr = "127.0.0.1:1"
			}
			pool, srv := newPool(t, "s1")
			logs, log := newLog()
			c := New([]Target{{Backend: "app", Pool: pool, Server: srv[0], Settings: tc.set, Start: State{Up: true}}}, log)
			if errs := logs.entries(t, "error"); len(errs) != 1 {
				t.Errorf("New logged %d errors, want 1", len(errs))
			}
			c.ColdStart(context.Background())
			if got := state(t, c, "s1").LastReason; got != tc.want || srv[0].Up() {
				t.Errorf("reason %q (up %v), want %q, down", got, srv[0].Up(), tc.want)
			}
		})
	}
}

// rawTCP answers each connection with a function, then closes it.
type rawTCP struct{ *tcpServer }

func rawServer(t *testing.T, answer func(net.Conn)) rawTCP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.n.Add(1)
			c.SetDeadline(time.Now().Add(time.Second))
			// Read the request head so that closing does not reset.
			buf := make([]byte, 4096)
			c.Read(buf)
			answer(c)
			c.Close()
		}
	}()
	t.Cleanup(s.close)
	return rawTCP{s}
}
