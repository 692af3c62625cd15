package httpproxy

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/http2/hpack"

	"lb/h1"
	"lb/h2"
	"lb/rules"
)

// parseFields reads the fuzzer's text form of an HTTP/2 header list: one
// field a line, "name: value" (a line without ": " is a name with an empty
// value); pseudo-headers are names that start with ":".
func parseFields(s string) []hpack.HeaderField {
	var fs []hpack.HeaderField
	for _, line := range strings.Split(s, "\n") {
		name, value, _ := strings.Cut(line, ": ")
		fs = append(fs, hpack.HeaderField{Name: name, Value: value})
	}
	return fs
}

// FuzzH2ToH1 is a differential check of the HTTP/2 to HTTP/1.1
// translation: for any HTTP/2 request lb forwards, the HTTP/1.1 head it
// writes to the server, header rules and X-Forwarded-* applied, parses
// back with lb's strict HTTP/1 parser to the same method, target, host,
// framing and fields. A request that would not is malformed and never
// forwarded.
func FuzzH2ToH1(f *testing.F) {
	for _, seed := range []struct {
		fields     string
		end, whole bool
	}{
		{":method: GET\n:scheme: https\n:path: /p?q=1\n:authority: good.example\naccept: */*", true, false},
		{":method: GET\n:scheme: https\n:path: /\n:authority: good.example\nhost: evil.example", true, false},
		{":method: POST\n:scheme: https\n:path: /\n:authority: a\ncontent-length: 5, 6", false, false},
		{":method: POST\n:scheme: https\n:path: /\n:authority: a\ncontent-length: 5\ncontent-length: 6", false, false},
		{":method: GET\n:scheme: https\n:path: /\n:authority: a b/c", true, false},
		{":method: GET\n:scheme: https\n:path: /a b\n:authority: a", true, false},
		{":method: POST\n:scheme: http\n:path: /up\nhost: h:8080\ncontent-length: 3\ntrailer: x-sum", false, true},
		{":method: POST\n:scheme: https\n:path: /up\n:authority: a\ncookie: a=1\ncookie: b=2\nexpect: 100-continue", false, false},
		{":method: PUT\n:scheme: https\n:path: /up\n:authority: a\ntransfer-encoding: chunked", false, false},
		{":method: GET\n:scheme: https\n:path: /\n:authority: a\nx-forwarded-for: 10.0.0.1\nforwarded: for=1.2.3.4\nx-request-id: abc", true, false},
		{":method: OPTIONS\n:scheme: https\n:path: *\n:authority: a\nconnection: close\nte: trailers", true, false},
	} {
		f.Add(seed.fields, seed.end, seed.whole)
	}
	rule, err := rules.CompileHeaderRule(rules.HeaderRuleSpec{Action: "set", Name: "X-Route", Value: "%[host] %[request_id] %[client]"})
	if err != nil {
		f.Fatal(err)
	}
	fe := &Frontend{Name: "fuzz", Forwarded: true, RequestIDHeader: "X-Request-Id", ReqRules: []*rules.HeaderRule{rule}}
	be := &Backend{}
	peer := netip.MustParseAddrPort("[2001:db8::1]:5555")
	big := h1.Limits{MaxHeaderBytes: 1 << 20, MaxHeaders: 1 << 10}
	f.Fuzz(func(t *testing.T, text string, end, whole bool) {
		var x exchange
		x.f, x.be, x.peer = fe, be, peer
		if _, err := h2.ReadRequest(&x.req, parseFields(text), end, h1.Limits{}); err != nil {
			return // malformed or too large: never forwarded
		}
		if x.req.Body.Kind != h1.BodyNone {
			x.frameH2Body(strings.NewReader(""), 3, whole)
		}
		x.env.Client, x.env.Frontend, x.env.Scheme = x.peer, fe.Name, "https"
		x.env.RequestID = x.requestID()
		x.env.Host = x.req.Host()
		x.prepareRequest()
		if x.reqLen < 0 {
			// The body goes chunked, whatever length the client declared.
			x.req.Body = h1.Body{Kind: h1.BodyChunked}
		}
		if err := h1.CheckRoundTrip(&x.req, big); err != nil {
			t.Fatalf("forwarded %q as an ambiguous HTTP/1.1 head: %v", text, err)
		}
	})
}
