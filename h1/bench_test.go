package h1

import (
	"bufio"
	"strings"
	"testing"
)

// browserRequest is a typical request of a browser, with 12 fields.
const browserRequest = "GET /static/app.js?v=1234 HTTP/1.1\r\n" +
	"Host: www.example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: */*\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Accept-Encoding: gzip, deflate, br, zstd\r\n" +
	"Referer: https://www.example.com/index.html\r\n" +
	"Connection: keep-alive\r\n" +
	"Cookie: session=7f3a9c2e4b1d8f6a; theme=dark; lang=en\r\n" +
	"Sec-Fetch-Dest: script\r\n" +
	"Sec-Fetch-Mode: no-cors\r\n" +
	"Sec-Fetch-Site: same-origin\r\n" +
	"If-None-Match: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n" +
	"\r\n"

// typicalResponse is a typical response of a server, with 10 fields.
const typicalResponse = "HTTP/1.1 200 OK\r\n" +
	"Date: Thu, 20 Nov 2025 22:26:00 GMT\r\n" +
	"Server: nginx/1.27.0\r\n" +
	"Content-Type: application/javascript; charset=utf-8\r\n" +
	"Content-Length: 48213\r\n" +
	"Last-Modified: Wed, 19 Nov 2025 10:00:00 GMT\r\n" +
	"ETag: \"33a64df551425fcc55e4d42a148795d9f25f89d4\"\r\n" +
	"Cache-Control: public, max-age=31536000, immutable\r\n" +
	"Vary: Accept-Encoding\r\n" +
	"Connection: keep-alive\r\n" +
	"X-Request-Id: 4f2c1a9e-7b3d-4e8f-a1c2-9d8e7f6a5b4c\r\n" +
	"\r\n"

// parseLoop returns a function that parses msg with parse into reused
// storage, from a reused bufio.Reader.
func parseLoop(msg string, parse func(br *bufio.Reader) error) func() error {
	sr := strings.NewReader(msg)
	br := bufio.NewReader(sr)
	return func() error {
		sr.Reset(msg)
		br.Reset(sr)
		return parse(br)
	}
}

func BenchmarkReadRequest(b *testing.B) {
	var r Request
	run := parseLoop(browserRequest, func(br *bufio.Reader) error { return ReadRequest(br, &r, Limits{}) })
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadResponse(b *testing.B) {
	var r Response
	method := []byte("GET")
	run := parseLoop(typicalResponse, func(br *bufio.Reader) error { return ReadResponse(br, &r, Limits{}, method) })
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalResponse)))
	for b.Loop() {
		if err := run(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkProxyRequest is what a proxy does with a request head: read,
// drop hop-by-hop fields, add its own, write.
func BenchmarkProxyRequest(b *testing.B) {
	var r Request
	run := parseLoop(browserRequest, func(br *bufio.Reader) error { return ReadRequest(br, &r, Limits{}) })
	w := bufio.NewWriter(discard{})
	xff := []byte("192.0.2.1")
	b.ReportAllocs()
	b.SetBytes(int64(len(browserRequest)))
	for b.Loop() {
		if err := run(); err != nil {
			b.Fatal(err)
		}
		r.RemoveHopByHop()
		r.Set("X-Forwarded-For", xff)
		if err := WriteRequestHead(w, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkWriteResponseHead(b *testing.B) {
	var r Response
	if err := parseLoop(typicalResponse, func(br *bufio.Reader) error { return ReadResponse(br, &r, Limits{}, nil) })(); err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(discard{})
	b.ReportAllocs()
	for b.Loop() {
		if err := WriteResponseHead(w, &r); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReadAllocs proves that parsing into a reused Request or Response
// does not allocate once its storage has grown.
func TestReadAllocs(t *testing.T) {
	var req Request
	var resp Response
	chunkedReq := "POST /upload HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
	tests := []struct {
		name string
		run  func() error
	}{
		{"browser request", parseLoop(browserRequest, func(br *bufio.Reader) error { return ReadRequest(br, &req, Limits{}) })},
		{"chunked request", parseLoop(chunkedReq, func(br *bufio.Reader) error { return ReadRequest(br, &req, Limits{}) })},
		{"absolute-form request", parseLoop("GET http://h/p HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n",
			func(br *bufio.Reader) error {
				if err := ReadRequest(br, &req, Limits{}); err != nil {
					return err
				}
				_, _ = req.Host(), req.Path()
				return nil
			})},
		{"response", parseLoop(typicalResponse, func(br *bufio.Reader) error { return ReadResponse(br, &resp, Limits{}, []byte("GET")) })},
		{"response with CL and TE", parseLoop("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
			func(br *bufio.Reader) error { return ReadResponse(br, &resp, Limits{}, []byte("GET")) })},
		{"large head, small buffer", func() func() error {
			big := "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 10000) + "\r\n\r\n"
			sr := strings.NewReader(big)
			br := bufio.NewReaderSize(sr, 512)
			return func() error {
				sr.Reset(big)
				br.Reset(sr)
				return ReadRequest(br, &req, Limits{})
			}
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.run(); err != nil { // grow the storage
				t.Fatal(err)
			}
			n := testing.AllocsPerRun(100, func() {
				if err := tt.run(); err != nil {
					t.Fatal(err)
				}
			})
			if n != 0 {
				t.Errorf("%v allocations per parse, want 0", n)
			}
		})
	}
}
