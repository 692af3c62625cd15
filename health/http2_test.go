package health

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The HTTP check of a backend with proto = "h2" speaks HTTP/2: h2c with
// prior knowledge, or TLS with h2 by ALPN.
func TestHTTP2Checks(t *testing.T) {
	t.Parallel()
	var h1, h2 atomic.Int64
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		} else {
			h1.Add(1)
		}
		if r.URL.Path == "/bad" {
			w.WriteHeader(503)
		}
		_, _ = io.WriteString(w, "all ok "+r.Host+" "+r.UserAgent())
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h2c := &http.Server{Handler: handler, Protocols: &protos}
	go func() { _ = h2c.Serve(ln) }()
	t.Cleanup(func() { _ = h2c.Close() })
	secure := httptest.NewUnstartedServer(handler)
	secure.EnableHTTP2 = true
	secure.StartTLS()
	t.Cleanup(secure.Close)
	h1only := httptest.NewServer(handler)
	t.Cleanup(h1only.Close)
	trust := &tls.Config{RootCAs: secure.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs, ServerName: "example.com"}

	for _, c := range []struct {
		name, addr, path string
		tls              *tls.Config
		want             string // the failure's reason; "" means it passes
	}{
		{name: "h2c", addr: ln.Addr().String(), path: "/health"},
		{name: "h2c 503", addr: ln.Addr().String(), path: "/bad", want: "HTTP status 503, want 200-399"},
		{name: "TLS", addr: secure.Listener.Addr().String(), path: "/health", tls: trust},
		{name: "HTTP/1.1 server", addr: h1only.Listener.Addr().String(), path: "/health", want: "bad HTTP response"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := h2.Load()
			tg := newTarget(Target{Settings: Settings{Type: TypeHTTP, HTTP2: true, TLS: c.tls, Addr: c.addr, Path: c.path,
				Body: "all ok", Timeout: 5 * time.Second}})
			err := tg.probe(context.Background())
			switch {
			case c.want == "" && err != nil:
				t.Fatalf("the check failed: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(reasonOf(err), c.want)):
				t.Fatalf("the check's outcome: %v, want a failure: %s", err, c.want)
			case c.want == "" && h2.Load() != before+1:
				t.Errorf("the server got %d HTTP/2 checks, want 1", h2.Load()-before)
			}
		})
	}
	if h1.Load() != 0 {
		t.Errorf("%d checks came in HTTP/1.1", h1.Load())
	}
}
