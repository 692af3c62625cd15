package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// tcpPair returns the two ends of a TCP connection on the loopback.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// TestSocketExchange runs pipelined requests over TCP, sent in small
// pieces, through a server made of this package: it echoes each request
// body in a chunked response, and the client reads the responses back.
func TestSocketExchange(t *testing.T) {
	client, server := tcpPair(t)
	const n = 20
	bodyOf := func(i int) string { return strings.Repeat(fmt.Sprintf("<%d>", i), i*300) }

	serverDone := make(chan error, 1)
	go func() {
		serverDone <- func() error {
			defer server.Close()
			br := bufio.NewReaderSize(server, 4096)
			bw := bufio.NewWriter(server)
			var req Request
			var resp Response
			var cr ChunkedReader
			var cw ChunkedWriter
			for {
				err := ReadRequest(br, &req, Limits{})
				if err == io.EOF {
					return nil
				}
				if err != nil {
					return err
				}
				var body io.Reader = strings.NewReader("")
				switch req.Body.Kind {
				case BodyLength:
					body = io.LimitReader(br, req.Body.Length)
				case BodyChunked:
					cr.Reset(br, Limits{})
					body = &cr
				}
				resp.Reset()
				resp.Status = 200
				resp.Set("Transfer-Encoding", []byte("chunked"))
				resp.Set("X-Target", req.Target)
				if err := WriteResponseHead(bw, &resp); err != nil {
					return err
				}
				cw.Reset(bw)
				if _, err := io.Copy(&cw, body); err != nil {
					return err
				}
				if err := cw.Close(); err != nil {
					return err
				}
				if err := bw.Flush(); err != nil {
					return err
				}
			}
		}()
	}()

	// The client writes every request at once, in pieces of 7 bytes.
	go func() {
		var all strings.Builder
		for i := 0; i < n; i++ {
			b := bodyOf(i)
			if i%2 == 0 {
				fmt.Fprintf(&all, "POST /%d HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", i, len(b), b)
				continue
			}
			fmt.Fprintf(&all, "POST /%d HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n", i)
			for rest := b; len(rest) > 0; {
				k := min(len(rest), 1000)
				fmt.Fprintf(&all, "%x\r\n%s\r\n", k, rest[:k])
				rest = rest[k:]
			}
			all.WriteString("0\r\n\r\n")
		}
		s := all.String()
		for len(s) > 0 {
			k := min(len(s), 7)
			if _, err := client.Write([]byte(s[:k])); err != nil {
				return
			}
			s = s[k:]
		}
		client.(*net.TCPConn).CloseWrite()
	}()

	br := bufio.NewReader(client)
	var resp Response
	var cr ChunkedReader
	for i := 0; i < n; i++ {
		if err := ReadResponse(br, &resp, Limits{}, []byte("POST")); err != nil {
			t.Fatalf("response %d: %v", i, err)
		}
		if v, _ := resp.Get("X-Target"); string(v) != fmt.Sprintf("/%d", i) {
			t.Errorf("response %d for target %q", i, v)
		}
		if resp.Body.Kind != BodyChunked || !resp.KeepAlive {
			t.Fatalf("response %d: body %v, keep-alive %v", i, resp.Body.Kind, resp.KeepAlive)
		}
		cr.Reset(br, Limits{})
		b, err := io.ReadAll(&cr)
		if err != nil {
			t.Fatalf("response %d body: %v", i, err)
		}
		if string(b) != bodyOf(i) {
			t.Errorf("response %d: body of %d bytes, want %d", i, len(b), len(bodyOf(i)))
		}
	}
	if err := ReadResponse(br, &resp, Limits{}, []byte("GET")); err != io.EOF {
		t.Errorf("after the last response: %v, want io.EOF", err)
	}
	if err := <-serverDone; err != nil {
		t.Errorf("server: %v", err)
	}
}

// TestSocketDeadline checks that a read deadline comes out of ReadRequest
// and ChunkedReader as os.ErrDeadlineExceeded, before and within a head.
func TestSocketDeadline(t *testing.T) {
	tests := []struct {
		name string
		sent string
		body bool // read a chunked body after the head
	}{
		{"before the first byte", "", false},
		{"mid request line", "GET /pa", false},
		{"mid fields", "GET / HTTP/1.1\r\nHost: h\r\nX-A: ", false},
		{"mid chunked body", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhe", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := tcpPair(t)
			if _, err := client.Write([]byte(tt.sent)); err != nil {
				t.Fatal(err)
			}
			server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			br := bufio.NewReader(server)
			var req Request
			err := ReadRequest(br, &req, Limits{})
			if tt.body {
				if err != nil {
					t.Fatal(err)
				}
				var cr ChunkedReader
				cr.Reset(br, Limits{})
				_, err = io.ReadAll(&cr)
			}
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("err = %v, want os.ErrDeadlineExceeded", err)
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("err = %v, not a net.Error timeout", err)
			}
		})
	}
}

// TestSocketNotHTTP checks that ReadRequest rejects bytes that cannot
// start a request at once, without waiting for a line end that a TLS
// client will never send.
func TestSocketNotHTTP(t *testing.T) {
	client, server := tcpPair(t)
	hello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}
	if _, err := client.Write(hello); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	var req Request
	start := time.Now()
	err := ReadRequest(bufio.NewReader(server), &req, Limits{})
	checkError(t, err, 400, "in method")
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
}
