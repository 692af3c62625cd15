package h1

import (
	"bufio"
	"strings"
	"testing"
)

func TestWriteRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		req     *Request
		want    string
		wantErr string
	}{
		{"fields", &Request{Method: []byte("GET"), Target: []byte("/a?b"), Minor: 0,
			Head: *headOf("Host: h", "X-A: 1")},
			"GET /a?b HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n", ""},
		{"no fields", &Request{Method: []byte("OPTIONS"), Target: []byte("*")},
			"OPTIONS * HTTP/1.1\r\n\r\n", ""},
		{"empty value", &Request{Method: []byte("GET"), Target: []byte("/"), Head: *headOf("X-E: ")},
			"GET / HTTP/1.1\r\nX-E: \r\n\r\n", ""},
		{"bad method", &Request{Method: []byte("G T"), Target: []byte("/")}, "", "invalid method"},
		{"empty method", &Request{Target: []byte("/")}, "", "invalid method"},
		{"empty target", &Request{Method: []byte("GET")}, "", "empty target"},
		{"space in target", &Request{Method: []byte("GET"), Target: []byte("/a b")}, "", "in request target"},
		{"fragment in target", &Request{Method: []byte("GET"), Target: []byte("/a#b")}, "", "fragment"},
		{"obs-text in target", &Request{Method: []byte("GET"), Target: []byte("/caf\xc3\xa9")}, "", "in request target"},
		{"CRLF in value", &Request{Method: []byte("GET"), Target: []byte("/"),
			Head: *headOf("X-A: a\r\nX-Injected: 1")}, "", "invalid character in value"},
		{"bad name", &Request{Method: []byte("GET"), Target: []byte("/"),
			Head: *headOf("X A: 1")}, "", "invalid field name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			w := bufio.NewWriter(&b)
			err := WriteRequestHead(w, tt.req)
			w.Flush()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, tt.wantErr)
				}
				if b.Len() != 0 {
					t.Errorf("wrote %q despite the error", b.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("wrote %q, want %q", b.String(), tt.want)
			}
		})
	}
}

func TestWriteResponseHead(t *testing.T) {
	tests := []struct {
		name    string
		resp    *Response
		want    string
		wantErr string
	}{
		{"reason given", &Response{Status: 200, Reason: []byte("Fine"), Head: *headOf("Content-Length: 2")},
			"HTTP/1.1 200 Fine\r\nContent-Length: 2\r\n\r\n", ""},
		{"standard reason", &Response{Status: 404}, "HTTP/1.1 404 Not Found\r\n\r\n", ""},
		{"431", &Response{Status: 431}, "HTTP/1.1 431 Request Header Fields Too Large\r\n\r\n", ""},
		{"unknown code", &Response{Status: 799}, "HTTP/1.1 799 \r\n\r\n", ""},
		{"HTTP/1.0 written as 1.1", &Response{Status: 101, Minor: 0, Head: *headOf("Upgrade: websocket")},
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n", ""},
		{"status too low", &Response{Status: 99}, "", "invalid status"},
		{"status too high", &Response{Status: 1000}, "", "invalid status"},
		{"CR in reason", &Response{Status: 200, Reason: []byte("O\rK")}, "", "reason"},
		{"LF in value", &Response{Status: 200, Head: *headOf("Set-Cookie: a\nb")}, "", "invalid character in value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			w := bufio.NewWriter(&b)
			err := WriteResponseHead(w, tt.resp)
			w.Flush()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one about %q", err, tt.wantErr)
				}
				if b.Len() != 0 {
					t.Errorf("wrote %q despite the error", b.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != tt.want {
				t.Errorf("wrote %q, want %q", b.String(), tt.want)
			}
		})
	}
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errFail }

var errFail = &Error{Status: 0, Reason: "fail"}

func TestWriteHeadError(t *testing.T) {
	w := bufio.NewWriterSize(failWriter{}, 16)
	r := &Request{Method: []byte("GET"), Target: []byte("/" + strings.Repeat("a", 100))}
	if err := WriteRequestHead(w, r); err == nil {
		t.Error("no error from a failing writer")
	}
}

func TestStatusText(t *testing.T) {
	for code, want := range map[int]string{200: "OK", 502: "Bad Gateway", 414: "URI Too Long", 0: "", 299: ""} {
		if got := StatusText(code); got != want {
			t.Errorf("StatusText(%d) = %q, want %q", code, got, want)
		}
	}
}

// TestWriteAllocs checks that writing heads does not allocate.
func TestWriteAllocs(t *testing.T) {
	req := &Request{Method: []byte("GET"), Target: []byte("/"), Head: *headOf("Host: h", "Accept: */*")}
	resp := &Response{Status: 200, Head: *headOf("Content-Length: 2")}
	w := bufio.NewWriter(discard{})
	n := testing.AllocsPerRun(100, func() {
		if err := WriteRequestHead(w, req); err != nil {
			t.Fatal(err)
		}
		if err := WriteResponseHead(w, resp); err != nil {
			t.Fatal(err)
		}
	})
	if n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// discard is io.Discard without the ReaderFrom, as a network connection
// would be seen by a bufio.Writer.
type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
