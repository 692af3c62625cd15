package tlshello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"lb/internal/testsock"
	"os"
	"testing"
	"time"
)

// TestPeekHandshake peeks at the hello of a real tls.Client, then hands the
// connection to a tls.Server and completes the handshake and an exchange:
// Peek consumed nothing.
func TestPeekHandshake(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, tc := range []struct {
		name  string
		tls12 bool
	}{{"TLS 1.3", false}, {"TLS 1.2", true}} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := testsock.Pair(t)
			clientCfg := &tls.Config{ServerName: "Example.com.", RootCAs: pool, NextProtos: []string{"h2"}}
			if tc.tls12 {
				clientCfg.MaxVersion = tls.VersionTLS12
			}
			clientErr := make(chan error, 1)
			go func() {
				c := tls.Client(client, clientCfg)
				c.SetDeadline(time.Now().Add(patience))
				if err := c.Handshake(); err != nil {
					clientErr <- err
					return
				}
				if _, err := c.Write([]byte("ping")); err != nil {
					clientErr <- err
					return
				}
				reply := make([]byte, 4)
				if _, err := io.ReadFull(c, reply); err != nil {
					clientErr <- err
					return
				}
				if string(reply) != "pong" {
					clientErr <- errors.New("client read " + string(reply))
					return
				}
				clientErr <- nil
			}()

			sni, err := peek(t, server, patience)
			if err != nil || sni != "example.com" {
				t.Fatalf("Peek = %q, %v; want example.com", sni, err)
			}
			// Peeking again gives the same answer: still nothing consumed.
			if sni, err := peek(t, server, patience); err != nil || sni != "example.com" {
				t.Fatalf("second Peek = %q, %v; want example.com", sni, err)
			}

			server.SetDeadline(time.Now().Add(patience))
			s := tls.Server(server, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
			if err := s.Handshake(); err != nil {
				t.Fatalf("server handshake after Peek: %v", err)
			}
			if got := s.ConnectionState().ServerName; got != "Example.com" {
				t.Errorf("the server saw the name %q", got)
			}
			ping := make([]byte, 4)
			if _, err := io.ReadFull(s, ping); err != nil || string(ping) != "ping" {
				t.Fatalf("server read %q, %v", ping, err)
			}
			if _, err := s.Write([]byte("pong")); err != nil {
				t.Fatal(err)
			}
			if err := <-clientErr; err != nil {
				t.Fatalf("client: %v", err)
			}
		})
	}
}

// TestPeekPieces writes a hello in three pieces with pauses in between, then
// checks that all of its bytes are still there.
func TestPeekPieces(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello []byte
	}{
		{"one record", captureHello(t, helloConfig{serverName: "Pieces.Test"})},
		{"two records", reframe(captureHello(t, helloConfig{serverName: "Pieces.Test"}), 50)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := testsock.Pair(t)
			hello := tc.hello
			go func() {
				cuts := []int{0, 3, len(hello) / 2, len(hello)}
				for i := 1; i < len(cuts); i++ {
					time.Sleep(30 * time.Millisecond)
					if _, err := client.Write(hello[cuts[i-1]:cuts[i]]); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			sni, err := peek(t, server, patience)
			if err != nil || sni != "pieces.test" {
				t.Fatalf("Peek = %q, %v; want pieces.test", sni, err)
			}
			got := make([]byte, len(hello))
			server.SetReadDeadline(time.Now().Add(patience))
			if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, hello) {
				t.Fatalf("reading the hello after Peek: %v (equal: %v)", err, bytes.Equal(got, hello))
			}
		})
	}
}

// TestPeekThenClose: a whole hello followed by a close is still a hello.
func TestPeekThenClose(t *testing.T) {
	server, client := testsock.Pair(t)
	hello := captureHello(t, helloConfig{serverName: "a.b.test"})
	if _, err := client.Write(hello); err != nil {
		t.Fatal(err)
	}
	client.Close()
	if sni, err := peek(t, server, patience); err != nil || sni != "a.b.test" {
		t.Fatalf("Peek = %q, %v; want a.b.test", sni, err)
	}
}

func TestPeekNotTLS(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n\r\n", "SSH-2.0-OpenSSH_9.6\r\n", "\x16\x03\x01\x00\x04\x02\x00\x00\x00"} {
		server, client := testsock.Pair(t)
		if _, err := client.Write([]byte(in)); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		sni, err := peek(t, server, patience)
		if !errors.Is(err, ErrNotTLS) {
			t.Fatalf("Peek after %q = %q, %v; want ErrNotTLS", in, sni, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) >= patience {
			t.Fatalf("Peek waited for the deadline: %v", err)
		}
		t.Logf("%v", err)
		got := make([]byte, len(in))
		server.SetReadDeadline(time.Now().Add(patience))
		if _, err := io.ReadFull(server, got); err != nil || string(got) != in {
			t.Fatalf("reading after Peek: %q, %v", got, err)
		}
	}
}

func TestPeekMalformed(t *testing.T) {
	server, client := testsock.Pair(t)
	if _, err := client.Write(helloWith(sniExt("bad name"))); err != nil {
		t.Fatal(err)
	}
	_, err := peek(t, server, patience)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Peek = %v; want an *Error", err)
	}
}

func TestPeekDeadline(t *testing.T) {
	for _, tc := range []struct {
		name string
		send []byte
	}{
		{"nothing", nil},
		{"half a hello", captureHello(t, helloConfig{serverName: "a.b.test"})[:100]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			server, client := testsock.Pair(t)
			if _, err := client.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			sni, err := peek(t, server, 100*time.Millisecond)
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Peek = %q, %v; want a deadline error", sni, err)
			}
			if want := "tlshello: no complete ClientHello within the deadline: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
				t.Errorf("Peek error %q; want it to begin with %q", err, want)
			}
		})
	}
}

func TestPeekEOF(t *testing.T) {
	hello := captureHello(t, helloConfig{serverName: "a.b.test"})
	for _, tc := range []struct {
		name      string
		send      []byte
		halfClose bool
		want      error
	}{
		{"half a hello, close", hello[:len(hello)/2], false, io.ErrUnexpectedEOF},
		{"half a hello, half-close", hello[:len(hello)/2], true, io.ErrUnexpectedEOF},
		{"all but one byte, half-close", hello[:len(hello)-1], true, io.ErrUnexpectedEOF},
		{"nothing, close", nil, false, io.EOF},
		{"nothing, half-close", nil, true, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, late := range []bool{false, true} {
				server, client := testsock.Pair(t)
				finish := func() {
					if _, err := client.Write(tc.send); err != nil {
						t.Error(err)
					}
					if tc.halfClose {
						client.CloseWrite()
					} else {
						client.Close()
					}
				}
				if late {
					// Peek waits first, then the bytes and the close come.
					go func() { time.Sleep(50 * time.Millisecond); finish() }()
				} else {
					finish()
				}
				sni, err := peek(t, server, patience)
				if !errors.Is(err, tc.want) || (tc.want == io.EOF && errors.Is(err, io.ErrUnexpectedEOF)) {
					t.Fatalf("Peek (late %v) = %q, %v; want %v", late, sni, err, tc.want)
				}
			}
		})
	}
}

func TestPeekSmallBuffer(t *testing.T) {
	server, _ := testsock.Pair(t)
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Peek(rc, make([]byte, MaxHello)); err == nil {
		t.Fatal("Peek with a buffer of MaxHello bytes succeeded")
	}
}

// TestPeekLargeHello peeks at a hello of almost MaxHello bytes, in records
// written separately.
func TestPeekLargeHello(t *testing.T) {
	p := defaultParts()
	p.exts = vec16(ext(0x1234, make([]byte, MaxHello-200)), sniExt("big.test"))
	hello := reframe(record(handshake(p.body())), 5000, 5000, 5000)
	if len(hello) > MaxHello+64 {
		t.Fatalf("test hello of %d bytes", len(hello))
	}
	server, client := testsock.Pair(t)
	go func() {
		for i := 0; i < len(hello); i += 4000 {
			time.Sleep(10 * time.Millisecond)
			if _, err := client.Write(hello[i:min(i+4000, len(hello))]); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	if sni, err := peek(t, server, patience); err != nil || sni != "big.test" {
		t.Fatalf("Peek = %q, %v; want big.test", sni, err)
	}
}
