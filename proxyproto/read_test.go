package proxyproto

import (
	"errors"
	"io"
	"lb/internal/testsock"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// patience bounds waits for things that should happen; the machine may be
// busy, so it is generous and never a measure of speed.
const patience = 10 * time.Second

// readHeader calls Read on conn with a deadline d from now.
func readHeader(t *testing.T, conn *net.TCPConn, d time.Duration, bufLen int) (Header, error) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return Read(rc, make([]byte, bufLen))
}

// rest closes the client's sending side and returns what the server reads
// after the header.
func rest(t *testing.T, server, client *net.TCPConn) string {
	t.Helper()
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := server.SetReadDeadline(time.Now().Add(patience)); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(server)
	if err != nil {
		t.Fatalf("reading the payload: %v", err)
	}
	return string(b)
}

func write(t *testing.T, c *net.TCPConn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Error(err)
	}
}

var readHeaders = []struct {
	name string
	wire []byte
	want Header
}{
	{"v1", []byte("PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n"),
		Header{Version: 1, Source: ap("[2001:db8::1]:56324"), Dest: ap("[2001:db8::2]:443")}},
	{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), Header{Version: 1, Local: true}},
	{"v2", v2(0x21, 0x11, v2TCP4Body, tlv(0x01, []byte("h2")), tlv(0x02, []byte("example.com")), ssl(0x01, tlv(0x21, []byte("TLSv1.3")))),
		Header{Version: 2, Source: v2TCP4.Source, Dest: v2TCP4.Dest, ALPN: "h2", Authority: "example.com", TLS: true, TLSVersion: "TLSv1.3"}},
	{"v2 LOCAL", v2(0x20, 0x00), v2Local},
}

// The payload starts like a header, to show that Read does not look at it.
const payload = "PROXY TCP4 1.1.1.1 2.2.2.2 1 1\r\nGET / HTTP/1.1\r\n\r\n"

func TestReadOneWrite(t *testing.T) {
	t.Parallel()
	for _, c := range readHeaders {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			server, client := testsock.Pair(t)
			write(t, client, append(append([]byte{}, c.wire...), payload...))
			h, err := readHeader(t, server, patience, 536)
			if err != nil || h != c.want {
				t.Fatalf("Read = %+v, %v; want %+v", h, err, c.want)
			}
			if got := rest(t, server, client); got != payload {
				t.Fatalf("after the header: %q, want %q", got, payload)
			}
		})
	}
}

func TestReadInPieces(t *testing.T) {
	t.Parallel()
	for _, c := range readHeaders {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			server, client := testsock.Pair(t)
			wire := append(append([]byte{}, c.wire...), payload...)
			// Cut inside the signature, then inside the header's body.
			cuts := []int{3, 14, len(wire)}
			done := make(chan struct{})
			go func() {
				defer close(done)
				prev := 0
				for _, cut := range cuts {
					time.Sleep(30 * time.Millisecond)
					write(t, client, wire[prev:cut])
					prev = cut
				}
			}()
			h, err := readHeader(t, server, patience, 536)
			<-done
			if err != nil || h != c.want {
				t.Fatalf("Read = %+v, %v; want %+v", h, err, c.want)
			}
			if got := rest(t, server, client); got != payload {
				t.Fatalf("after the header: %q, want %q", got, payload)
			}
		})
	}
}

func TestReadByteByByte(t *testing.T) {
	t.Parallel()
	c := readHeaders[2]
	server, client := testsock.Pair(t)
	if err := client.SetNoDelay(true); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range c.wire {
			write(t, client, c.wire[i:i+1])
			time.Sleep(time.Millisecond)
		}
		write(t, client, []byte(payload))
	}()
	h, err := readHeader(t, server, patience, 536)
	<-done
	if err != nil || h != c.want {
		t.Fatalf("Read = %+v, %v; want %+v", h, err, c.want)
	}
	if got := rest(t, server, client); got != payload {
		t.Fatalf("after the header: %q, want %q", got, payload)
	}
}

func TestReadPeerCloses(t *testing.T) {
	t.Parallel()
	v2Hdr := v2(0x21, 0x11, v2TCP4Body)
	for _, c := range []struct {
		name  string
		sent  []byte
		delay bool // close while Read waits, rather than before it starts
		half  bool // shut down the sending side only
		is    error
		msg   string
	}{
		{"nothing", nil, false, false, io.EOF, "proxyproto: the peer closed after 0 bytes, before a complete header"},
		{"nothing later", nil, true, false, io.EOF, "after 0 bytes"},
		{"mid v1", []byte("PROXY TCP4"), false, false, io.ErrUnexpectedEOF, "proxyproto: the peer closed after 10 bytes, before a complete header"},
		{"mid v1 later", []byte("PROXY TCP4 1.2.3.4 "), true, false, io.ErrUnexpectedEOF, "after 19 bytes"},
		{"mid v1 before LF", []byte("PROXY UNKNOWN\r"), true, true, io.ErrUnexpectedEOF, "after 14 bytes"},
		{"mid v2", v2Hdr[:20], false, true, io.ErrUnexpectedEOF, "after 20 bytes"},
		{"mid v2 later", v2Hdr[:27], true, true, io.ErrUnexpectedEOF, "after 27 bytes"},
		{"mid v2 signature", v2Hdr[:5], true, false, io.ErrUnexpectedEOF, "after 5 bytes"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			server, client := testsock.Pair(t)
			write(t, client, c.sent)
			closeIt := func() {
				var err error
				if c.half {
					err = client.CloseWrite()
				} else {
					err = client.Close()
				}
				if err != nil {
					t.Error(err)
				}
			}
			done := make(chan struct{})
			if c.delay {
				go func() {
					defer close(done)
					time.Sleep(50 * time.Millisecond)
					closeIt()
				}()
			} else {
				closeIt()
				close(done)
			}
			h, err := readHeader(t, server, patience, 536)
			<-done
			if !errors.Is(err, c.is) || err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("Read = %+v, %v; want an error wrapping %v and containing %q", h, err, c.is, c.msg)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read waited for the deadline: %v", err)
			}
		})
	}
}

func TestReadDeadline(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		sent string
		msg  string
	}{
		{"nothing", "", "proxyproto: no header within the deadline: "},
		{"part of v1", "PROXY TCP4 1.2", "proxyproto: no complete header within the deadline: "},
		{"part of v2", "\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x01", "proxyproto: no complete header within the deadline: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			server, client := testsock.Pair(t)
			write(t, client, []byte(c.sent))
			h, err := readHeader(t, server, 100*time.Millisecond, 536)
			if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.HasPrefix(err.Error(), c.msg) {
				t.Fatalf("Read = %+v, %v; want an error wrapping os.ErrDeadlineExceeded that begins with %q", h, err, c.msg)
			}
			// Nothing was consumed.
			if got := rest(t, server, client); got != c.sent {
				t.Fatalf("after the failed Read: %q, want %q", got, c.sent)
			}
		})
	}
}

func TestReadNotProxy(t *testing.T) {
	t.Parallel()
	for _, sent := range []string{
		"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
		"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
		"PROXY",
	} {
		t.Run(strconv.Quote(sent[:3]), func(t *testing.T) {
			t.Parallel()
			server, client := testsock.Pair(t)
			write(t, client, []byte(sent))
			if sent == "PROXY" {
				// A prefix of the signature is incomplete, not foreign:
				// the verdict comes with the next byte.
				done := make(chan struct{})
				go func() {
					defer close(done)
					time.Sleep(30 * time.Millisecond)
					write(t, client, []byte("!"))
				}()
				defer func() { <-done }()
				sent += "!"
			}
			h, err := readHeader(t, server, patience, 536)
			quote := strconv.Quote(sent[:min(len(sent), 16)])
			if !errors.Is(err, ErrNotProxy) || !strings.Contains(err.Error(), quote) {
				t.Fatalf("Read = %+v, %v; want an error wrapping ErrNotProxy that quotes %s", h, err, quote)
			}
			if got := rest(t, server, client); got != sent {
				t.Fatalf("after the failed Read: %q, want %q", got, sent)
			}
		})
	}
}

func TestReadMalformed(t *testing.T) {
	t.Parallel()
	server, client := testsock.Pair(t)
	write(t, client, []byte("PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n"))
	_, err := readHeader(t, server, patience, 536)
	var perr *Error
	if !errors.As(err, &perr) || err.Error() != `proxyproto: v1 header: source port "70000" is out of range` {
		t.Fatalf("Read error: %v", err)
	}
}

func TestReadLongV2(t *testing.T) {
	t.Parallel()
	wire := v2(0x21, 0x11, v2TCP4Body, tlv(0x04, rep(0, 985)), tlv(0x01, []byte("h2")))
	want := Header{Version: 2, Source: v2TCP4.Source, Dest: v2TCP4.Dest, ALPN: "h2"}
	t.Run("too long", func(t *testing.T) {
		t.Parallel()
		server, client := testsock.Pair(t)
		write(t, client, wire)
		_, err := readHeader(t, server, patience, 536)
		var perr *Error
		if !errors.As(err, &perr) || err.Error() != "proxyproto: v2 header: header of 1021 bytes is longer than lb reads (max 536)" {
			t.Fatalf("Read error: %v", err)
		}
	})
	t.Run("big buffer", func(t *testing.T) {
		t.Parallel()
		server, client := testsock.Pair(t)
		write(t, client, append(append([]byte{}, wire...), payload...))
		h, err := readHeader(t, server, patience, 4096+16)
		if err != nil || h != want {
			t.Fatalf("Read = %+v, %v; want %+v", h, err, want)
		}
		if got := rest(t, server, client); got != payload {
			t.Fatalf("after the header: %q, want %q", got, payload)
		}
	})
}

func TestReadSmallBuffer(t *testing.T) {
	t.Parallel()
	server, _ := testsock.Pair(t)
	_, err := readHeader(t, server, patience, 535)
	if err == nil || !strings.Contains(err.Error(), "at least 536 bytes, got 535") {
		t.Fatalf("Read error: %v", err)
	}
}

func TestReadClosedConn(t *testing.T) {
	t.Parallel()
	server, _ := testsock.Pair(t)
	rc, err := server.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	server.Close()
	if _, err := Read(rc, make([]byte, 536)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read on a closed conn: %v", err)
	}
}
