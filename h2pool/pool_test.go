package h2pool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// h2cServer is a real net/http HTTP/2 server (cleartext, prior
// knowledge) that counts its connections.
type h2cServer struct {
	addr          string
	opened, ended atomic.Int64
}

func startServer(t *testing.T, maxStreams int, h http.HandlerFunc) *h2cServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &h2cServer{addr: ln.Addr().String()}
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Handler:   h,
		Protocols: &protos,
		HTTP2:     &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		ErrorLog:  log.New(io.Discard, "", 0),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				s.opened.Add(1)
			case http.StateClosed, http.StateHijacked:
				s.ended.Add(1)
			}
		},
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return s
}

// get sends a GET over a connection from p, again on another when the
// server did not process it (Unsent), as lb does: a new connection takes
// requests up to the default limit of 100 until the server's SETTINGS
// say less, and the server refuses the streams over its own.
func get(p *Pool, path string) error {
	var resp *http.Response
	for attempt := 0; ; attempt++ {
		cc, _, err := p.Get(context.Background())
		if err != nil {
			return err
		}
		req, _ := http.NewRequest("GET", "http://"+p.addr+path, nil)
		resp, err = cc.RoundTrip(req)
		if err == nil {
			break
		}
		if attempt == 2 || !Unsent(err) {
			return err
		}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.ProtoMajor != 2 || string(body) != path {
		return fmt.Errorf("%s: %s %q %v", path, resp.Proto, body, err)
	}
	return nil
}

func echoPath(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) }

// A burst of requests on a cold pool shares the one connection it opens.
func TestBurstSharesOneConnection(t *testing.T) {
	s := startServer(t, 0, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		echoPath(w, r)
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := range 50 {
		wg.Go(func() {
			if err := get(p, fmt.Sprintf("/%d", i)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.opened.Load(); n != 1 || p.Len() != 1 {
		t.Errorf("50 requests at once: the server saw %d connections, the pool holds %d; want 1", n, p.Len())
	}
}

// A request that finds every connection at the server's stream limit
// opens another.
func TestFullConnectionsOpenAnother(t *testing.T) {
	release := make(chan struct{})
	var waiting atomic.Int64
	s := startServer(t, 2, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/block" {
			waiting.Add(1)
			<-release
		}
		echoPath(w, r)
	})
	p := New(Options{Addr: s.addr})
	defer p.Close()
	// A first request, so that the server's SETTINGS (2 streams) are in.
	if err := get(p, "/first"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Go(func() {
			if err := get(p, "/block"); err != nil {
				errs <- err
			}
		})
	}
	for deadline := time.Now().Add(10 * time.Second); waiting.Load() < 6 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := s.opened.Load(); n != 3 {
		t.Errorf("6 requests at once, 2 streams a connection: %d connections, want 3", n)
	}
}

// A connection idle for the idle timeout is closed.
func TestIdleConnectionsClose(t *testing.T) {
	s := startServer(t, 0, echoPath)
	p := New(Options{Addr: s.addr, IdleTimeout: 200 * time.Millisecond})
	defer p.Close()
	if err := get(p, "/a"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for (p.Len() > 0 || s.ended.Load() == 0) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if p.Len() != 0 || s.ended.Load() != 1 {
		t.Fatalf("after the idle timeout the pool holds %d connections, the server saw %d end", p.Len(), s.ended.Load())
	}
	// The pool opens a new one when asked again.
	if err := get(p, "/b"); err != nil || s.opened.Load() != 2 {
		t.Errorf("%v; %d connections opened, want 2", err, s.opened.Load())
	}
}

// Requests that wait for a connection being opened share its failure.
func TestDialFailureIsShared(t *testing.T) {
	var dials atomic.Int64
	start := make(chan struct{})
	p := New(Options{Addr: "127.0.0.1:1", Dial: func(context.Context) (net.Conn, error) {
		dials.Add(1)
		<-start
		return nil, errors.New("no route")
	}})
	defer p.Close()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for range 10 {
		wg.Go(func() {
			if _, _, err := p.Get(context.Background()); err != nil {
				failed.Add(1)
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	close(start)
	wg.Wait()
	if failed.Load() != 10 || dials.Load() > 2 {
		t.Errorf("%d of 10 failed, after %d dials; want all, after 1 (or 2, for one that came late)", failed.Load(), dials.Load())
	}
}

func TestUnsent(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream}, true},
		{fmt.Errorf("wrapped: %w", http2.StreamError{StreamID: 1, Code: http2.ErrCodeRefusedStream}), true},
		{http2.StreamError{StreamID: 1, Code: http2.ErrCodeCancel}, false},
		{errors.New("http2: client conn not usable"), true},
		{io.ErrUnexpectedEOF, false},
	} {
		if got := Unsent(c.err); got != c.want {
			t.Errorf("Unsent(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
