package h2

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"

	"lb/h1"
)

// fields makes header fields from "name: value" strings; pseudo-headers
// start with ":" (":path: /a").
func fields(lines ...string) []hpack.HeaderField {
	out := make([]hpack.HeaderField, 0, len(lines))
	for _, l := range lines {
		i := strings.Index(l[1:], ": ") + 1
		out = append(out, hpack.HeaderField{Name: l[:i], Value: l[i+2:]})
	}
	return out
}

// get is the minimal valid request.
var get = []string{":method: GET", ":scheme: https", ":path: /p?q=1", ":authority: good.example"}

func with(extra ...string) []hpack.HeaderField {
	return fields(append(append([]string{}, get...), extra...)...)
}

func headString(h *h1.Head) string {
	var b strings.Builder
	for i, f := range h.Fields {
		if i > 0 {
			b.WriteString("|")
		}
		b.WriteString(string(f.Name) + ": " + string(f.Value))
	}
	return b.String()
}

func TestReadRequest(t *testing.T) {
	tests := []struct {
		name   string
		fields []hpack.HeaderField
		end    bool
		method string
		target string
		head   string
		body   h1.Body
		cl     int64
		expect bool
	}{
		{name: "GET", fields: with("accept: */*", "user-agent: x"), end: true,
			method: "GET", target: "/p?q=1", head: "Host: good.example|Accept: */*|User-Agent: x", cl: -1},
		{name: "host equal to authority is dropped", fields: with("host: Good.Example"), end: true,
			method: "GET", target: "/p?q=1", head: "Host: good.example", cl: -1},
		{name: "host without authority", fields: fields(":method: GET", ":scheme: http", ":path: /", "host: h.example:8080"), end: true,
			method: "GET", target: "/", head: "Host: h.example:8080", cl: -1},
		{name: "cookies joined", fields: with("cookie: a=1", "x-a: 1", "cookie: b=2", "cookie: c=3"), end: true,
			method: "GET", target: "/p?q=1", head: "Host: good.example|Cookie: a=1; b=2; c=3|X-A: 1", cl: -1},
		{name: "content-length body", fields: fields(":method: POST", ":scheme: https", ":path: /up", ":authority: a", "content-length: 5", "content-type: text/plain"),
			method: "POST", target: "/up", head: "Host: a|Content-Length: 5|Content-Type: text/plain", body: h1.Body{Kind: h1.BodyLength, Length: 5}, cl: 5},
		{name: "body of unknown length", fields: fields(":method: POST", ":scheme: https", ":path: /up", ":authority: a"),
			method: "POST", target: "/up", head: "Host: a", body: h1.Body{Kind: h1.BodyChunked}, cl: -1},
		{name: "content-length 0", fields: fields(":method: POST", ":scheme: https", ":path: /up", ":authority: a", "content-length: 0"),
			method: "POST", target: "/up", head: "Host: a|Content-Length: 0", cl: 0},
		{name: "te trailers", fields: with("te: trailers"), end: true,
			method: "GET", target: "/p?q=1", head: "Host: good.example|Te: trailers", cl: -1},
		{name: "expect 100-continue", fields: fields(":method: PUT", ":scheme: https", ":path: /x", ":authority: a", "expect: 100-continue", "content-length: 3"),
			method: "PUT", target: "/x", head: "Host: a|Expect: 100-continue|Content-Length: 3", body: h1.Body{Kind: h1.BodyLength, Length: 3}, cl: 3, expect: true},
		{name: "OPTIONS *", fields: fields(":method: OPTIONS", ":scheme: https", ":path: *", ":authority: a"), end: true,
			method: "OPTIONS", target: "*", head: "Host: a", cl: -1},
		{name: "CONNECT", fields: fields(":method: CONNECT", ":authority: a.example:443"), end: false,
			method: "CONNECT", target: "a.example:443", head: "Host: a.example:443", body: h1.Body{Kind: h1.BodyChunked}, cl: -1},
		{name: "IPv6 authority", fields: fields(":method: GET", ":scheme: https", ":path: /", ":authority: [::1]:8443"), end: true,
			method: "GET", target: "/", head: "Host: [::1]:8443", cl: -1},
		{name: "obs-text in a value", fields: with("x-name: caf\xc3\xa9"), end: true,
			method: "GET", target: "/p?q=1", head: "Host: good.example|X-Name: caf\xc3\xa9", cl: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req h1.Request
			cl, err := ReadRequest(&req, tt.fields, tt.end, h1.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if string(req.Method) != tt.method || string(req.Target) != tt.target || req.Minor != 1 {
				t.Errorf("request line %q %q 1.%d, want %q %q 1.1", req.Method, req.Target, req.Minor, tt.method, tt.target)
			}
			if got := headString(&req.Head); got != tt.head {
				t.Errorf("head %q, want %q", got, tt.head)
			}
			if req.Body != tt.body || cl != tt.cl || req.Expect100 != tt.expect || !req.KeepAlive {
				t.Errorf("body %+v cl %d expect %v keep-alive %v, want %+v %d %v true", req.Body, cl, req.Expect100, req.KeepAlive, tt.body, tt.cl, tt.expect)
			}
		})
	}
}

// TestReadRequestMalformed holds every request the issue found forwarded
// ambiguously, and the rest of RFC 9113 8.2-8.3's malformed requests.
func TestReadRequestMalformed(t *testing.T) {
	tests := []struct {
		name   string
		fields []hpack.HeaderField
		end    bool
		reason string
	}{
		{"host differs from authority", with("host: evil.example"), true, "differs from :authority"},
		{"two hosts", fields(":method: GET", ":scheme: https", ":path: /", "host: a", "host: a"), true, "several host"},
		{"two :path", fields(":method: GET", ":scheme: https", ":path: /a", ":path: /b", ":authority: a"), true, "several :path"},
		{"two :method", fields(":method: GET", ":method: POST", ":scheme: https", ":path: /", ":authority: a"), true, "several :method"},
		{"two :authority", fields(":method: GET", ":scheme: https", ":path: /", ":authority: a", ":authority: b"), true, "several :authority"},
		{"two :scheme", fields(":method: GET", ":scheme: https", ":scheme: http", ":path: /", ":authority: a"), true, "several :scheme"},
		{"content-length list", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5, 6"), false, "invalid content-length"},
		{"content-length list of equal values", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5, 5"), false, "invalid content-length"},
		{"two content-lengths", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5", "content-length: 6"), false, "several content-length"},
		{"content-length not a number", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: +5"), false, "invalid content-length"},
		{"content-length without a body", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "content-length: 5"), true, "without a body"},
		{"authority with space and slash", fields(":method: GET", ":scheme: https", ":path: /", ":authority: a b/c"), true, "invalid :authority"},
		{"authority with userinfo", fields(":method: GET", ":scheme: https", ":path: /", ":authority: u@a"), true, "invalid :authority"},
		{"empty authority", fields(":method: GET", ":scheme: https", ":path: /", ":authority: "), true, "invalid :authority"},
		{"no authority nor host", fields(":method: GET", ":scheme: https", ":path: /"), true, "no :authority and no host"},
		{"space in path", fields(":method: GET", ":scheme: https", ":path: /a b", ":authority: a"), true, ":path"},
		{"fragment in path", fields(":method: GET", ":scheme: https", ":path: /a#b", ":authority: a"), true, ":path"},
		{"obs-text in path", fields(":method: GET", ":scheme: https", ":path: /caf\xc3\xa9", ":authority: a"), true, ":path"},
		{"control in path", fields(":method: GET", ":scheme: https", ":path: /a\x01", ":authority: a"), true, ":path"},
		{"relative path", fields(":method: GET", ":scheme: https", ":path: a/b", ":authority: a"), true, "not an absolute path"},
		{"absolute-form path", fields(":method: GET", ":scheme: https", ":path: http://evil/", ":authority: a"), true, "not an absolute path"},
		{"empty path", fields(":method: GET", ":scheme: https", ":path: ", ":authority: a"), true, "empty :path"},
		{"star path with GET", fields(":method: GET", ":scheme: https", ":path: *", ":authority: a"), true, ":path *"},
		{"no method", fields(":scheme: https", ":path: /", ":authority: a"), true, "no :method"},
		{"bad method", fields(":method: G T", ":scheme: https", ":path: /", ":authority: a"), true, "invalid :method"},
		{"no scheme", fields(":method: GET", ":path: /", ":authority: a"), true, "no :scheme"},
		{"no path", fields(":method: GET", ":scheme: https", ":authority: a"), true, "no :scheme or no :path"},
		{"other scheme", fields(":method: GET", ":scheme: ftp", ":path: /", ":authority: a"), true, ":scheme"},
		{"protocol", fields(":method: CONNECT", ":protocol: websocket", ":scheme: https", ":path: /", ":authority: a"), true, ":protocol"},
		{"CONNECT with a path", fields(":method: CONNECT", ":path: /", ":authority: a:1"), false, "CONNECT with"},
		{"connection", with("connection: keep-alive"), true, "connection-specific field connection"},
		{"keep-alive", with("keep-alive: 5"), true, "keep-alive"},
		{"proxy-connection", with("proxy-connection: close"), true, "proxy-connection"},
		{"transfer-encoding", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "transfer-encoding: chunked"), false, "transfer-encoding"},
		{"upgrade", with("upgrade: websocket"), true, "upgrade"},
		{"te gzip", with("te: gzip"), true, "te"},
		{"te list", with("te: trailers, deflate"), true, "te"},
		{"leading space in a value", with("x-a:  1"), true, "whitespace"},
		{"trailing tab in a value", with("x-a: 1\t"), true, "whitespace"},
		{"control in a value", with("x-a: 1\x7f"), true, "invalid character"},
		{"field name not a token", with("x(a): 1"), true, "invalid field name"},
		{"upper-case content-length", fields(":method: POST", ":scheme: https", ":path: /", ":authority: a", "Content-Length: 1"), true, "upper-case field name"},
		{"pseudo after regular", fields(":method: GET", ":scheme: https", "x-a: 1", ":path: /", ":authority: a"), true, "after a regular field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var req h1.Request
			_, err := ReadRequest(&req, tt.fields, tt.end, h1.Limits{})
			var me *MalformedError
			if !errors.As(err, &me) {
				t.Fatalf("err = %v, want a *MalformedError", err)
			}
			if !strings.Contains(me.Reason, tt.reason) {
				t.Errorf("reason %q, want it to hold %q", me.Reason, tt.reason)
			}
		})
	}
}

func TestReadRequestLimits(t *testing.T) {
	many := append([]string{}, get...)
	for range 10 {
		many = append(many, "x-a: 1")
	}
	var req h1.Request
	_, err := ReadRequest(&req, fields(many...), true, h1.Limits{MaxHeaders: 10})
	var he *h1.Error
	if !errors.As(err, &he) || he.Status != 431 {
		t.Errorf("11 fields over max_headers 10: err = %v, want a 431", err)
	}
	if _, err := ReadRequest(&req, fields(many...), true, h1.Limits{MaxHeaders: 11}); err != nil {
		t.Errorf("11 fields under max_headers 11: %v", err)
	}
	big := with("x-big: " + strings.Repeat("b", 200))
	if _, err := ReadRequest(&req, big, true, h1.Limits{MaxHeaderBytes: 200}); !errors.As(err, &he) || he.Status != 431 {
		t.Errorf("a head over max_header_bytes: err = %v, want a 431", err)
	}
	if _, err := ReadRequest(&req, big, true, h1.Limits{MaxHeaderBytes: 300}); err != nil {
		t.Errorf("a head under max_header_bytes: %v", err)
	}
}

func TestReadTrailer(t *testing.T) {
	var tr h1.Head
	if err := ReadTrailer(&tr, fields("grpc-status: 0", "x-sum: abc"), h1.Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := headString(&tr); got != "Grpc-Status: 0|X-Sum: abc" {
		t.Errorf("trailer %q", got)
	}
	for _, bad := range [][]hpack.HeaderField{fields(":status: 200"), fields("connection: close"), fields("x-a:  1")} {
		var me *MalformedError
		if err := ReadTrailer(&tr, bad, h1.Limits{}); !errors.As(err, &me) {
			t.Errorf("trailer %v: err = %v, want a *MalformedError", bad, err)
		}
	}
}

// TestReadRequestParsesBack checks, on the table of valid requests, what
// the fuzz target checks on any input: the HTTP/1.1 head written parses
// back, with lb's strict parser, to the same request.
func TestReadRequestParsesBack(t *testing.T) {
	var req h1.Request
	for _, tc := range []struct {
		fields []hpack.HeaderField
		end    bool
	}{
		{with("cookie: a=1", "cookie: b=2", "accept: */*"), true},
		{fields(":method: POST", ":scheme: https", ":path: /up", ":authority: a", "content-length: 5"), false},
	} {
		fs := tc.fields
		if _, err := ReadRequest(&req, fs, tc.end, h1.Limits{}); err != nil {
			t.Fatal(err)
		}
		if err := h1.CheckRoundTrip(&req, h1.Limits{}); err != nil {
			t.Errorf("%v: %v", fs, err)
		}
	}
}
