package h1

import (
	"bufio"
	"errors"
	"io"
	"strings"
	"testing"
)

// fieldStrings returns the fields of h as "Name: Value".
func fieldStrings(h *Head) []string {
	var s []string
	for _, f := range h.Fields {
		s = append(s, string(f.Name)+": "+string(f.Value))
	}
	return s
}

// readRequestString parses in with a bufio.Reader of size bufSize (4096
// when 0).
func readRequestString(in string, bufSize int, lim Limits) (*Request, error) {
	if bufSize == 0 {
		bufSize = 4096
	}
	var r Request
	err := ReadRequest(bufio.NewReaderSize(strings.NewReader(in), bufSize), &r, lim)
	return &r, err
}

// checkError checks that err is an *Error of status whose Reason holds
// reason.
func checkError(t *testing.T, err error, status int, reason string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v, want an *Error %d", err, status)
	}
	if e.Status != status {
		t.Errorf("status = %d (%q), want %d", e.Status, e.Reason, status)
	}
	if !strings.Contains(e.Reason, reason) {
		t.Errorf("reason = %q, want it to hold %q", e.Reason, reason)
	}
}

func TestReadRequest(t *testing.T) {
	type want struct {
		method, target string
		minor          int
		fields         string // joined with "|"
		body           Body
		keepAlive      bool
		upgrade        bool
		expect100      bool
		path, host     string
	}
	tests := []struct {
		name string
		in   string
		want want
	}{
		{
			name: "simple GET",
			in:   "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: want{method: "GET", target: "/index.html?q=1", minor: 1,
				fields: "Host: example.com", keepAlive: true,
				path: "/index.html", host: "example.com"},
		},
		{
			name: "bare LF line ends",
			in:   "GET / HTTP/1.1\nHost: h\nX-A: b\n\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h|X-A: b", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "leading empty lines skipped",
			in:   "\r\n\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "names keep case, values trimmed, order kept",
			in:   "GET / HTTP/1.1\r\nhOsT:h\r\nX-Empty:\r\nx-sp: \t a  b \t\r\nX-Dup: 1\r\nX-Dup: 2\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields:    "hOsT: h|X-Empty: |x-sp: a  b|X-Dup: 1|X-Dup: 2",
				keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "obs-text in value",
			in:   "GET / HTTP/1.1\r\nHost: h\r\nX-U: caf\xc3\xa9\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h|X-U: caf\xc3\xa9", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "Content-Length",
			in:   "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 42\r\n\r\n",
			want: want{method: "POST", target: "/up", minor: 1,
				fields: "Host: h|Content-Length: 42",
				body:   Body{Kind: BodyLength, Length: 42}, keepAlive: true, path: "/up", host: "h"},
		},
		{
			name: "Content-Length 0 is no body",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n",
			want: want{method: "POST", target: "/", minor: 1,
				fields: "Host: h|Content-Length: 0", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "Content-Length list of equal values normalized",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 7 ,7,  7\r\n\r\n",
			want: want{method: "POST", target: "/", minor: 1,
				fields: "Host: h|Content-Length: 7",
				body:   Body{Kind: BodyLength, Length: 7}, keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "Content-Length leading zeros",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 007\r\n\r\n",
			want: want{method: "POST", target: "/", minor: 1,
				fields: "Host: h|Content-Length: 007",
				body:   Body{Kind: BodyLength, Length: 7}, keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "Content-Length max int64",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775807\r\n\r\n",
			want: want{method: "POST", target: "/", minor: 1,
				fields: "Host: h|Content-Length: 9223372036854775807",
				body:   Body{Kind: BodyLength, Length: 1<<63 - 1}, keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "chunked",
			in:   "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n",
			want: want{method: "POST", target: "/", minor: 1,
				fields: "Host: h|Transfer-Encoding: Chunked",
				body:   Body{Kind: BodyChunked}, keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "Connection close",
			in:   "GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h|Connection: foo, CLOSE", path: "/", host: "h"},
		},
		{
			name: "HTTP/1.0 without Host",
			in:   "GET /x HTTP/1.0\r\n\r\n",
			want: want{method: "GET", target: "/x", minor: 0, path: "/x"},
		},
		{
			name: "HTTP/1.0 keep-alive",
			in:   "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 0,
				fields: "Connection: Keep-Alive", keepAlive: true, path: "/"},
		},
		{
			name: "HTTP/1.0 ignores upgrade and expect",
			in:   "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\nExpect: 100-continue\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 0,
				fields: "Connection: upgrade|Upgrade: websocket|Expect: 100-continue", path: "/"},
		},
		{
			name: "HTTP/1.2 taken as 1.1",
			in:   "GET / HTTP/1.2\r\nHost: h\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "upgrade",
			in:   "GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n",
			want: want{method: "GET", target: "/ws", minor: 1,
				fields:    "Host: h|Connection: keep-alive, Upgrade|Upgrade: websocket",
				keepAlive: true, upgrade: true, path: "/ws", host: "h"},
		},
		{
			name: "Upgrade field without the Connection option",
			in:   "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h|Upgrade: websocket", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "Connection upgrade without Upgrade field",
			in:   "GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h|Connection: upgrade", keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "expect 100-continue",
			in:   "PUT / HTTP/1.1\r\nHost: h\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n",
			want: want{method: "PUT", target: "/", minor: 1,
				fields: "Host: h|Expect: 100-Continue|Content-Length: 3",
				body:   Body{Kind: BodyLength, Length: 3}, keepAlive: true, expect100: true, path: "/", host: "h"},
		},
		{
			name: "absolute-form wins over Host",
			in:   "GET http://Example.com:8080/a/b?c HTTP/1.1\r\nHost: other\r\n\r\n",
			want: want{method: "GET", target: "http://Example.com:8080/a/b?c", minor: 1,
				fields: "Host: other", keepAlive: true, path: "/a/b", host: "Example.com:8080"},
		},
		{
			name: "absolute-form with empty path",
			in:   "GET https://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n",
			want: want{method: "GET", target: "https://example.com?x", minor: 1,
				fields: "Host: example.com", keepAlive: true, path: "/", host: "example.com"},
		},
		{
			name: "authority-form CONNECT",
			in:   "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			want: want{method: "CONNECT", target: "example.com:443", minor: 1,
				fields: "Host: example.com:443", keepAlive: true, path: "example.com:443", host: "example.com:443"},
		},
		{
			name: "CONNECT to an IPv6 literal",
			in:   "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
			want: want{method: "CONNECT", target: "[::1]:443", minor: 1,
				fields: "Host: [::1]:443", keepAlive: true, path: "[::1]:443", host: "[::1]:443"},
		},
		{
			name: "asterisk-form OPTIONS",
			in:   "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			want: want{method: "OPTIONS", target: "*", minor: 1,
				fields: "Host: h", keepAlive: true, path: "*", host: "h"},
		},
		{
			name: "empty Host is valid",
			in:   "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: ", keepAlive: true, path: "/"},
		},
		{
			name: "Content-Length in a GET",
			in:   "GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n",
			want: want{method: "GET", target: "/", minor: 1,
				fields: "Host: h|Content-Length: 2",
				body:   Body{Kind: BodyLength, Length: 2}, keepAlive: true, path: "/", host: "h"},
		},
		{
			name: "extension method",
			in:   "PROPFIND /dav HTTP/1.1\r\nHost: h\r\n\r\n",
			want: want{method: "PROPFIND", target: "/dav", minor: 1,
				fields: "Host: h", keepAlive: true, path: "/dav", host: "h"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				r, err := readRequestString(tt.in, size, Limits{})
				if err != nil {
					t.Fatalf("buffer %d: %v", size, err)
				}
				w := tt.want
				got := want{
					method: string(r.Method), target: string(r.Target), minor: r.Minor,
					fields: strings.Join(fieldStrings(&r.Head), "|"), body: r.Body, keepAlive: r.KeepAlive,
					upgrade: r.Upgrade, expect100: r.Expect100,
					path: string(r.Path()), host: string(r.Host()),
				}
				if got != w {
					t.Errorf("buffer %d: got %+v, want %+v", size, got, w)
				}
			}
		})
	}
}

func TestReadRequestErrors(t *testing.T) {
	long := strings.Repeat("a", 200)
	tests := []struct {
		name   string
		in     string
		lim    Limits
		status int
		reason string
	}{
		// Request smuggling.
		{"CL then TE", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, 400, "both Content-Length and Transfer-Encoding"},
		{"TE then CL", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", Limits{}, 400, "both Content-Length and Transfer-Encoding"},
		{"TE and CL 0", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", Limits{}, 400, "both Content-Length and Transfer-Encoding"},
		{"CL+TE without Host", "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, 400, "both Content-Length and Transfer-Encoding"},
		{"chunked twice in a list", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", Limits{}, 400, "chunked more than once"},
		{"chunked twice in two fields", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, 400, "chunked more than once"},
		{"TE final not chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", Limits{}, 400, "not chunked"},
		{"TE chunked then gzip", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", Limits{}, 400, "not chunked"},
		{"TE identity", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", Limits{}, 400, "not chunked"},
		{"TE gzip, chunked", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", Limits{}, 501, "not implemented"},
		{"TE gzip then chunked fields", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, 501, "not implemented"},
		{"TE empty", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n\r\n", Limits{}, 400, "Transfer-Encoding"},
		{"TE empty element", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , chunked\r\n\r\n", Limits{}, 400, "invalid Transfer-Encoding"},
		{"TE trailing comma", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked,\r\n\r\n", Limits{}, 400, "invalid Transfer-Encoding"},
		{"TE chunked with parameter", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", Limits{}, 400, "parameters"},
		{"TE not a token", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", Limits{}, 400, "invalid Transfer-Encoding"},
		{"TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", Limits{}, 400, "HTTP/1.0"},
		{"space before colon", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n", Limits{}, 400, "whitespace between field name and colon"},
		{"tab before colon", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length\t: 5\r\n\r\n", Limits{}, 400, "whitespace between field name and colon"},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\n b\r\n\r\n", Limits{}, 400, "obs-fold"},
		{"obs-fold of TE", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding:\r\n chunked\r\n\r\n", Limits{}, 400, "obs-fold"},
		{"whitespace before first field", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", Limits{}, 400, "obs-fold"},
		{"CL list of different values", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 6\r\n\r\n", Limits{}, 400, "different values"},
		{"several CL fields", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", Limits{}, 400, "several Content-Length"},
		{"several equal CL fields", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", Limits{}, 400, "several Content-Length"},
		{"CL plus sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: +5\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL minus sign", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL hex", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0x5\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL inner space", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 0\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL empty", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length:\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL trailing comma", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5,\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL overflow", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9223372036854775808\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		{"CL huge", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n", Limits{}, 400, "invalid Content-Length"},
		// Field syntax.
		{"no colon", "GET / HTTP/1.1\r\nHost: h\r\nX-A\r\n\r\n", Limits{}, 400, "without a colon"},
		{"empty name", "GET / HTTP/1.1\r\nHost: h\r\n: v\r\n\r\n", Limits{}, 400, "empty field name"},
		{"bad name char", "GET / HTTP/1.1\r\nHost: h\r\nX(A): v\r\n\r\n", Limits{}, 400, "field name"},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n", Limits{}, 400, "invalid character in value"},
		{"bare CR in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\rb\r\n\r\n", Limits{}, 400, "invalid character in value"},
		{"CR CR LF", "GET / HTTP/1.1\r\nHost: h\r\nX-A: a\r\r\n\r\n", Limits{}, 400, "invalid character in value"},
		{"DEL in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: \x7f\r\n\r\n", Limits{}, 400, "invalid character in value"},
		{"ESC in value", "GET / HTTP/1.1\r\nHost: h\r\nX-A: \x1b[0m\r\n\r\n", Limits{}, 400, "invalid character in value"},
		{"bare CR ends head", "GET / HTTP/1.1\r\nHost: h\r\n\r\r\n", Limits{}, 400, ""},
		{"bare CR as line end", "GET / HTTP/1.1\rHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		// Host.
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", Limits{}, 400, "without Host"},
		{"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", Limits{}, 400, "several Host"},
		{"two equal Host fields", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", Limits{}, 400, "several Host"},
		{"Host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", Limits{}, 400, "invalid Host"},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", Limits{}, 400, "invalid Host"},
		{"Host with space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", Limits{}, 400, "invalid Host"},
		{"Host list", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", Limits{}, 400, "invalid Host"},
		// Request line.
		{"lower-case version", "GET / http/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", Limits{}, 505, "not supported"},
		{"HTTP/0.9 version", "GET / HTTP/0.9\r\n\r\n", Limits{}, 505, "not supported"},
		{"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Limits{}, 505, "not supported"},
		{"HTTP/1", "GET / HTTP/1\r\nHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"HTTP/0.9 request", "GET /\r\n\r\n", Limits{}, 400, "malformed request line"},
		{"no version", "GET / \r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"double space", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"space in target", "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", Limits{}, 400, "malformed HTTP version"},
		{"tab separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "in method"},
		{"empty method", " / HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "invalid method"},
		{"bad method", "GE@T / HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "in method"},
		{"TLS handshake", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", Limits{}, 400, "in method"},
		{"bad method past the buffer", strings.Repeat("G", 40) + "@ / HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "method"},
		{"CTL in target", "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "request target"},
		{"DEL in target", "GET /a\x7f HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "request target"},
		{"obs-text in target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "request target"},
		{"byte 0x80 in target", "GET /\x80 HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "request target"},
		{"fragment in target", "GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "fragment"},
		{"fragment in absolute-form", "GET http://h/a#frag HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "fragment"},
		{"relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "invalid request target"},
		{"star with GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "target *"},
		{"absolute-form without authority", "GET http:///a HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "invalid authority"},
		{"absolute-form with userinfo", "GET http://u@h/a HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "invalid authority"},
		{"CONNECT without port", "CONNECT example.com HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "CONNECT target"},
		{"CONNECT to a path", "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "CONNECT target"},
		{"too many empty lines", strings.Repeat("\r\n", 9) + "GET / HTTP/1.1\r\nHost: h\r\n\r\n", Limits{}, 400, "empty lines"},
		// Limits.
		{"request line too long", "GET /" + long + " HTTP/1.1\r\nHost: h\r\n\r\n", Limits{MaxHeaderBytes: 100}, 414, "start line longer"},
		{"request line without end", "GET /" + long, Limits{MaxHeaderBytes: 100}, 414, "start line longer"},
		{"head too long", "GET / HTTP/1.1\r\nHost: h\r\nX-A: " + long + "\r\n\r\n", Limits{MaxHeaderBytes: 100}, 431, "head larger"},
		{"head too long by the empty line", "GET / HTTP/1.1\r\nHost: h\r\n\r\n", Limits{MaxHeaderBytes: 25}, 431, "head larger"},
		{"too many fields", "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Limits{MaxHeaders: 3}, 431, "more than 3 header fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				_, err := readRequestString(tt.in, size, tt.lim)
				checkError(t, err, tt.status, tt.reason)
			}
		})
	}
}

func TestReadRequestLimitsExact(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\r\n"
	tests := []struct {
		name   string
		lim    Limits
		status int // 0: no error
	}{
		{"bytes exactly", Limits{MaxHeaderBytes: len(head)}, 0},
		{"one byte short", Limits{MaxHeaderBytes: len(head) - 1}, 431},
		{"fields exactly", Limits{MaxHeaders: 2}, 0},
		{"one field short", Limits{MaxHeaders: 1}, 431},
		{"start line exactly", Limits{MaxHeaderBytes: len("GET / HTTP/1.1\r\n")}, 431},
		{"start line one byte short", Limits{MaxHeaderBytes: len("GET / HTTP/1.1\r\n") - 1}, 414},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readRequestString(head, 16, tt.lim)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			checkError(t, err, tt.status, "")
		})
	}
}

// TestReadRequestLargeHead reads heads larger than the bufio.Reader's
// buffer, up to the default MaxHeaderBytes.
func TestReadRequestLargeHead(t *testing.T) {
	big := strings.Repeat("v", 6000)
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"long field", "GET / HTTP/1.1\r\nHost: h\r\nX-Big: " + big + "\r\n\r\n", true},
		{"long target", "GET /" + big + " HTTP/1.1\r\nHost: h\r\n\r\n", true},
		{"two long fields", "GET / HTTP/1.1\r\nHost: h\r\nX-1: " + big + "\r\nX-2: " + big + "\r\n\r\n", true},
		{"three long fields", "GET / HTTP/1.1\r\nHost: h\r\nX-1: " + big + "\r\nX-2: " + big + "\r\nX-3: " + big + "\r\n\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := readRequestString(tt.in, 4096, Limits{})
			if !tt.ok {
				checkError(t, err, 431, "head larger")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v, _ := r.Get("Host"); string(v) != "h" {
				t.Errorf("Host = %q", v)
			}
			for _, f := range r.Fields[1:] {
				if string(f.Value) != big {
					t.Errorf("%s: value of %d bytes, want %d", f.Name, len(f.Value), len(big))
				}
			}
		})
	}
}

func TestReadRequestEOF(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want error
	}{
		{"nothing", "", io.EOF},
		{"only empty lines", "\r\n\r\n", io.EOF},
		{"mid request line", "GET / HT", io.ErrUnexpectedEOF},
		{"after request line", "GET / HTTP/1.1\r\n", io.ErrUnexpectedEOF},
		{"mid field", "GET / HTTP/1.1\r\nHost: h", io.ErrUnexpectedEOF},
		{"before the empty line", "GET / HTTP/1.1\r\nHost: h\r\n", io.ErrUnexpectedEOF},
		{"mid empty line", "GET / HTTP/1.1\r\nHost: h\r\n\r", io.ErrUnexpectedEOF},
		{"a lone CR", "\r", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readRequestString(tt.in, 16, Limits{})
			if err != tt.want {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// errReader returns its data, then err.
type errReader struct {
	data string
	err  error
}

func (e *errReader) Read(p []byte) (int, error) {
	if len(e.data) == 0 {
		return 0, e.err
	}
	n := copy(p, e.data)
	e.data = e.data[n:]
	return n, nil
}

func TestReadRequestReaderError(t *testing.T) {
	boom := errors.New("boom")
	for _, in := range []string{"", "GET / HTTP/1.1\r\nHo"} {
		var r Request
		err := ReadRequest(bufio.NewReader(&errReader{in, boom}), &r, Limits{})
		if !errors.Is(err, boom) {
			t.Errorf("%q: err = %v, want %v", in, err, boom)
		}
	}
}

// TestReadRequestPipelined reads requests one after the other from one
// bufio.Reader, consuming their bodies between.
func TestReadRequestPipelined(t *testing.T) {
	in := "POST /1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
		"POST /2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n" +
		"\r\n" + // an empty line some clients send after a body
		"GET /3 HTTP/1.1\r\nHost: h\r\n\r\n" +
		"PUT /4 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nxyz" +
		"GET /5 HTTP/1.0\r\n\r\n"
	want := []struct{ target, body string }{
		{"/1", "hello"}, {"/2", "abcde"}, {"/3", ""}, {"/4", "xyz"}, {"/5", ""},
	}
	for _, size := range []int{16, 64, 4096} {
		t.Run("buffer "+itoa(size), func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(in), size)
			var r Request
			var cr ChunkedReader
			for i, w := range want {
				if err := ReadRequest(br, &r, Limits{}); err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if string(r.Target) != w.target {
					t.Errorf("request %d: target %q, want %q", i, r.Target, w.target)
				}
				var body io.Reader = strings.NewReader("")
				switch r.Body.Kind {
				case BodyLength:
					body = io.LimitReader(br, r.Body.Length)
				case BodyChunked:
					cr.Reset(br, Limits{})
					body = &cr
				}
				b, err := io.ReadAll(body)
				if err != nil {
					t.Fatalf("request %d body: %v", i, err)
				}
				if string(b) != w.body {
					t.Errorf("request %d: body %q, want %q", i, b, w.body)
				}
			}
			if err := ReadRequest(br, &r, Limits{}); err != io.EOF {
				t.Errorf("after the last request: %v, want io.EOF", err)
			}
		})
	}
}

// itoa formats n for test names.
func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n /= 10 {
		b = append([]byte{byte('0' + n%10)}, b...)
	}
	return string(b)
}

// TestRequestReuse checks that reading a request into a Request resets
// what the previous one left.
func TestRequestReuse(t *testing.T) {
	var r Request
	in := "POST /a HTTP/1.1\r\nHost: h\r\nConnection: upgrade\r\nUpgrade: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /b HTTP/1.0\r\n\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	if err := ReadRequest(br, &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	r.Set("X-Added", []byte("v"))
	if _, err := br.Discard(3); err != nil {
		t.Fatal(err)
	}
	if err := ReadRequest(br, &r, Limits{}); err != nil {
		t.Fatal(err)
	}
	if len(r.Fields) != 0 || r.Body != (Body{}) || r.KeepAlive || r.Upgrade || r.Expect100 || r.Minor != 0 || string(r.Target) != "/b" {
		t.Errorf("second request: %+v", r)
	}
}

func TestPathAndHost(t *testing.T) {
	tests := []struct {
		target, host string
		wantPath     string
		wantHost     string
	}{
		{"/", "h", "/", "h"},
		{"/a?b?c", "h", "/a", "h"},
		{"/?q", "h", "/", "h"},
		{"//double/slash", "h", "//double/slash", "h"},
		{"http://x.org", "h", "/", "x.org"},
		{"http://x.org/", "h", "/", "x.org"},
		{"HTTP://x.org:81/p/q?r", "h", "/p/q", "x.org:81"},
		{"http://x.org#f", "h", "/", "x.org"},
		{"*", "h", "*", "h"},
		{"x.org:443", "", "x.org:443", ""},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			r := Request{Target: []byte(tt.target)}
			if tt.host != "" {
				r.Add("Host", []byte(tt.host))
			}
			if got := string(r.Path()); got != tt.wantPath {
				t.Errorf("Path = %q, want %q", got, tt.wantPath)
			}
			if got := string(r.Host()); got != tt.wantHost {
				t.Errorf("Host = %q, want %q", got, tt.wantHost)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Status: 400, Reason: "both Content-Length and Transfer-Encoding"}
	if got, want := e.Error(), "h1: both Content-Length and Transfer-Encoding (400)"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
