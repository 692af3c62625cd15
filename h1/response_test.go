package h1

import (
	"bufio"
	"io"
	"strings"
	"testing"
)

// readResponseString parses in as the response to a request of method.
func readResponseString(in, method string, bufSize int) (*Response, error) {
	var r Response
	err := ReadResponse(bufio.NewReaderSize(strings.NewReader(in), bufSize), &r, Limits{}, []byte(method))
	return &r, err
}

func TestReadResponse(t *testing.T) {
	type want struct {
		minor, status int
		reason        string
		fields        string // "Name: Value" joined with "|"
		body          Body
		keepAlive     bool
	}
	tests := []struct {
		name   string
		method string
		in     string
		want   want
	}{
		{"content-length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
			want{1, 200, "OK", "Content-Length: 12", Body{BodyLength, 12}, true}},
		{"content-length 0", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
			want{1, 200, "OK", "Content-Length: 0", Body{}, true}},
		{"chunked", "GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{1, 200, "OK", "Transfer-Encoding: chunked", Body{Kind: BodyChunked}, true}},
		{"chunked wins over Content-Length, which goes", "POST", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX: y\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{1, 200, "OK", "X: y|Transfer-Encoding: chunked", Body{Kind: BodyChunked}, true}},
		{"until close", "GET", "HTTP/1.1 200 OK\r\nServer: s\r\n\r\n",
			want{1, 200, "OK", "Server: s", Body{Kind: BodyUntilClose}, false}},
		{"HTTP/1.0 until close", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n",
			want{0, 200, "OK", "Connection: keep-alive", Body{Kind: BodyUntilClose}, false}},
		{"HTTP/1.0 keep-alive", "GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
			want{0, 200, "OK", "Connection: keep-alive|Content-Length: 1", Body{BodyLength, 1}, true}},
		{"HTTP/1.0 close", "GET", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n",
			want{0, 200, "OK", "Content-Length: 1", Body{BodyLength, 1}, false}},
		{"connection close", "GET", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
			want{1, 200, "OK", "Connection: close|Content-Length: 1", Body{BodyLength, 1}, false}},
		{"HEAD", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n",
			want{1, 200, "OK", "Content-Length: 1234", Body{}, true}},
		{"HEAD chunked", "HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			want{1, 200, "OK", "Transfer-Encoding: chunked", Body{}, true}},
		{"HEAD without length", "HEAD", "HTTP/1.1 200 OK\r\n\r\n",
			want{1, 200, "OK", "", Body{}, true}},
		{"204", "GET", "HTTP/1.1 204 No Content\r\n\r\n",
			want{1, 204, "No Content", "", Body{}, true}},
		{"304 with length", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
			want{1, 304, "Not Modified", "Content-Length: 10", Body{}, true}},
		{"100", "PUT", "HTTP/1.1 100 Continue\r\n\r\n",
			want{1, 100, "Continue", "", Body{}, true}},
		{"103", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n",
			want{1, 103, "Early Hints", "Link: </a.css>; rel=preload", Body{}, true}},
		{"101", "GET", "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
			want{1, 101, "Switching Protocols", "Connection: upgrade|Upgrade: websocket", Body{}, false}},
		{"2xx to CONNECT", "CONNECT", "HTTP/1.1 200 Connection established\r\n\r\n",
			want{1, 200, "Connection established", "", Body{}, false}},
		{"4xx to CONNECT", "CONNECT", "HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n",
			want{1, 403, "Forbidden", "Content-Length: 2", Body{BodyLength, 2}, true}},
		{"empty reason", "GET", "HTTP/1.1 200 \r\nContent-Length: 1\r\n\r\n",
			want{1, 200, "", "Content-Length: 1", Body{BodyLength, 1}, true}},
		{"no reason, no space", "GET", "HTTP/1.1 404\r\nContent-Length: 1\r\n\r\n",
			want{1, 404, "", "Content-Length: 1", Body{BodyLength, 1}, true}},
		{"reason with spaces and obs-text", "GET", "HTTP/1.1 500 Oh no \xe2\x80\x94 broken\r\nContent-Length: 1\r\n\r\n",
			want{1, 500, "Oh no \xe2\x80\x94 broken", "Content-Length: 1", Body{BodyLength, 1}, true}},
		{"unknown status", "GET", "HTTP/1.1 799 Odd\r\nContent-Length: 1\r\n\r\n",
			want{1, 799, "Odd", "Content-Length: 1", Body{BodyLength, 1}, true}},
		{"equal Content-Length list", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
			want{1, 200, "OK", "Content-Length: 3", Body{BodyLength, 3}, true}},
		{"bare LF", "GET", "HTTP/1.1 200 OK\nContent-Length: 1\n\n",
			want{1, 200, "OK", "Content-Length: 1", Body{BodyLength, 1}, true}},
		{"leading empty line", "GET", "\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n",
			want{1, 200, "OK", "Content-Length: 1", Body{BodyLength, 1}, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				r, err := readResponseString(tt.in, tt.method, size)
				if err != nil {
					t.Fatalf("buffer %d: %v", size, err)
				}
				got := want{r.Minor, r.Status, string(r.Reason), strings.Join(fieldStrings(&r.Head), "|"), r.Body, r.KeepAlive}
				if got != tt.want {
					t.Errorf("buffer %d: got %+v, want %+v", size, got, tt.want)
				}
			}
		})
	}
}

func TestReadResponseErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		status int
		reason string
	}{
		{"HTTP/2", "HTTP/2.0 200 OK\r\n\r\n", 505, "not supported"},
		{"lower-case version", "http/1.1 200 OK\r\n\r\n", 400, "malformed"},
		{"short status", "HTTP/1.1 20 OK\r\n\r\n", 400, "malformed"},
		{"long status", "HTTP/1.1 2000 OK\r\n\r\n", 400, "malformed"},
		{"letters in status", "HTTP/1.1 2x0 OK\r\n\r\n", 400, "status code"},
		{"status under 100", "HTTP/1.1 099 Low\r\n\r\n", 400, "under 100"},
		{"no space after version", "HTTP/1.1200 OK\r\n\r\n", 400, "malformed"},
		{"CTL in reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 400, "reason phrase"},
		{"several Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, "several Content-Length"},
		{"Content-Length list", "HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", 400, "different values"},
		{"bad Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", 400, "invalid Content-Length"},
		{"TE not chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 400, "not chunked"},
		{"TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not implemented"},
		{"TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400, "more than once"},
		{"TE in HTTP/1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "HTTP/1.0"},
		{"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\n", 400, "whitespace between"},
		{"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n\tb\r\n\r\n", 400, "obs-fold"},
		{"NUL in value", "HTTP/1.1 200 OK\r\nX-A: \x00\r\n\r\n", 400, "invalid character"},
		{"status line too long", "HTTP/1.1 200 " + strings.Repeat("k", 20000) + "\r\n\r\n", 431, "start line longer"},
		{"head too long", "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("k", 20000) + "\r\n\r\n", 431, "head larger"},
		{"too many fields", "HTTP/1.1 200 OK\r\n" + strings.Repeat("X: y\r\n", 101) + "\r\n", 431, "more than 100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readResponseString(tt.in, "GET", 4096)
			checkError(t, err, tt.status, tt.reason)
		})
	}
}

func TestReadResponseEOF(t *testing.T) {
	tests := []struct {
		in   string
		want error
	}{
		{"", io.EOF},
		{"HTTP/1.1 200", io.ErrUnexpectedEOF},
		{"HTTP/1.1 200 OK\r\nX: y\r\n", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if _, err := readResponseString(tt.in, "GET", 16); err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestReadResponseInterim reads a 100 and a 103 before the final response
// from one bufio.Reader.
func TestReadResponseInterim(t *testing.T) {
	in := "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: <a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"
	br := bufio.NewReader(strings.NewReader(in))
	var r Response
	for _, want := range []int{100, 103, 201} {
		if err := ReadResponse(br, &r, Limits{}, []byte("POST")); err != nil {
			t.Fatal(err)
		}
		if r.Status != want {
			t.Fatalf("status %d, want %d", r.Status, want)
		}
	}
	b, _ := io.ReadAll(io.LimitReader(br, r.Body.Length))
	if string(b) != "ok" {
		t.Errorf("body %q", b)
	}
}
