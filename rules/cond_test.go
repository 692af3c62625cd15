package rules

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"lb/h1"
	"lb/table"
)

// testFields is a Fields over a fakeHeader: Cookie reads the Cookie fields
// as h1.Head does, without allocating.
type testFields struct{ *fakeHeader }

func (f testFields) Cookie(name string) ([]byte, bool) {
	for i := range f.f {
		if strings.EqualFold(f.f[i].name, "Cookie") {
			if val, ok := h1.CookieIn(f.f[i].value, name); ok {
				return val, true
			}
		}
	}
	return nil, false
}

// fields returns a Fields with the fields given as name, value, ....
func fields(kv ...string) Fields { return testFields{hdr(kv...)} }

// Addresses of the test subjects.
var (
	testClient = netip.MustParseAddrPort("192.0.2.7:50000")
	testLocal  = netip.MustParseAddrPort("10.0.0.1:443")
)

// connSubject is a connection from testClient to testLocal, before any
// request.
func connSubject() *Subject {
	return &Subject{Client: testClient, Local: testLocal}
}

// reqSubject is a request on a connection from testClient to testLocal,
// with the header fields given as name, value, ....
func reqSubject(method, host, target string, kv ...string) *Subject {
	s := connSubject()
	s.Method, s.Host, s.Target, s.Header = []byte(method), []byte(host), []byte(target), fields(kv...)
	return s
}

// with returns a copy of s changed by fn.
func with(s *Subject, fn func(*Subject)) *Subject {
	c := *s
	fn(&c)
	return &c
}

func mustCond(t testing.TB, s CondSpec) *Cond {
	t.Helper()
	c, err := CompileCond(s)
	if err != nil {
		t.Fatalf("CompileCond(%+v): %v", s, err)
	}
	return c
}

// checkSpec checks err is a *SpecError at key[index] with that value and a
// message containing frag, and returns it.
func checkSpec(t *testing.T, err error, key string, index int, value, frag string) *SpecError {
	t.Helper()
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("error %T %v, want a *SpecError", err, err)
	}
	if se.Key != key || se.Index != index || se.Value != value {
		t.Errorf("error at %q[%d] %q, want %q[%d] %q: %v", se.Key, se.Index, se.Value, key, index, value, se)
	}
	if !strings.Contains(se.Msg, frag) {
		t.Errorf("message %q lacks %q", se.Msg, frag)
	}
	if se.Msg == "" || se.Msg[0] < 'a' || se.Msg[0] > 'z' {
		t.Errorf("message %q does not start with a lower-case letter", se.Msg)
	}
	if key != "" && (strings.HasPrefix(se.Msg, key+" ") || strings.HasPrefix(se.Msg, key+":")) {
		t.Errorf("message %q repeats the key", se.Msg)
	}
	return se
}

func TestCompileCondErrors(t *testing.T) {
	tab := func(s CondSpec) CondSpec { s.Table, s.Figure = "t", "http_req_rate"; return s }
	tests := []struct {
		name  string
		spec  CondSpec
		key   string
		index int
		value string
		frag  string
	}{
		{"empty spec", CondSpec{}, "", -1, "", "a condition needs at least one of src, src_file, dst_port, sni, host, path, path_prefix, path_regex, method, header, query, cookie, status, or table with figure and above"},
		{"name only", CondSpec{Name: "x", Src: []string{}}, "", -1, "", "a condition needs at least one of"},
		{"src not an address", CondSpec{Src: []string{"office"}}, "src", 0, "office", `is neither an address nor a CIDR block: write one like "192.0.2.7", "10.0.0.0/8" or "2001:db8::/32"`},
		{"src second element", CondSpec{Src: []string{"10.0.0.1", "300.1.1.1"}}, "src", 1, "300.1.1.1", "is neither an address nor a CIDR block"},
		{"src prefix too long", CondSpec{Src: []string{"10.0.0.0/33"}}, "src", 0, "10.0.0.0/33", "is neither an address nor a CIDR block"},
		{"src host bits", CondSpec{Src: []string{"10.1.2.3/8"}}, "src", 0, "10.1.2.3/8", "has bits set past its /8: write 10.0.0.0/8"},
		{"src ipv6 host bits", CondSpec{Src: []string{"2001:db8::1/32"}}, "src", 0, "2001:db8::1/32", "has bits set past its /32: write 2001:db8::/32"},
		{"src mapped host bits", CondSpec{Src: []string{"::ffff:192.0.2.1/120"}}, "src", 0, "::ffff:192.0.2.1/120", "has bits set past its /120: write ::ffff:192.0.2.0/120"},
		{"src zone", CondSpec{Src: []string{"fe80::1%eth0"}}, "src", 0, "fe80::1%eth0", "has a zone: write the address without %zone"},
		{"src zone in prefix", CondSpec{Src: []string{"fe80::%eth0/64"}}, "src", 0, "fe80::%eth0/64", "has a zone"},
		{"src empty", CondSpec{Src: []string{""}}, "src", 0, "", "is neither"},
		{"src_file bad line", CondSpec{SrcFile: "deny.txt", SrcLines: []string{"10.0.0.0/8", "192.0.2.1", "nope"}}, "src_file", -1, "deny.txt", `line 3: "nope" is neither an address nor a CIDR block`},
		{"src_file host bits", CondSpec{SrcFile: "f", SrcLines: []string{"10.0.0.1/24"}}, "src_file", -1, "f", `line 1: "10.0.0.1/24" has bits set past its /24: write 10.0.0.0/24`},
		{"src before src_file", CondSpec{Src: []string{"x"}, SrcFile: "f", SrcLines: []string{"y"}}, "src", 0, "x", "is neither"},
		{"dst_port 0", CondSpec{DstPort: []int{0}}, "dst_port", 0, "0", "is not a port: write a number from 1 to 65535"},
		{"dst_port too big", CondSpec{DstPort: []int{80, 65536}}, "dst_port", 1, "65536", "is not a port"},
		{"dst_port negative", CondSpec{DstPort: []int{-1}}, "dst_port", 0, "-1", "is not a port"},
		{"sni empty", CondSpec{SNI: []string{""}}, "sni", 0, "", "is empty: write a host name"},
		{"sni star", CondSpec{SNI: []string{"a.test", "*"}}, "sni", 1, "*", `remove it, or write "*.example.com"`},
		{"sni port", CondSpec{SNI: []string{"a.test:443"}}, "sni", 0, "a.test:443", `has a port: remove ":443"`},
		{"sni url", CondSpec{SNI: []string{"https://a.test"}}, "sni", 0, "https://a.test", "is a URL"},
		{"host", CondSpec{Host: []string{"a..test"}}, "host", 0, "a..test", `remove the extra "."`},
		{"path_prefix", CondSpec{PathPrefix: []string{"api"}}, "path_prefix", 0, "api", `does not start with "/": write "/api"`},
		{"path_regex", CondSpec{PathRegex: "^(/"}, "path_regex", -1, "^(/", "missing closing )"},
		{"method", CondSpec{Method: []string{"get"}}, "method", 0, "get", `methods are case-sensitive: write "GET"`},
		{"header", CondSpec{Header: []string{"X-A : b"}}, "header", 0, "X-A : b", `has whitespace before ":"`},
		{"path empty", CondSpec{Path: []string{""}}, "path", 0, "", "is empty"},
		{"path relative", CondSpec{Path: []string{"/", "login"}}, "path", 1, "login", `does not start with "/": write "/login"`},
		{"path query", CondSpec{Path: []string{"/a?b"}}, "path", 0, "/a?b", "remove the query"},
		{"path url", CondSpec{Path: []string{"https://a/b"}}, "path", 0, "https://a/b", "is a URL"},
		{"path space", CondSpec{Path: []string{"/a b"}}, "path", 0, "/a b", "write %20 instead"},
		{"query empty", CondSpec{Query: []string{""}}, "query", 0, "", `has no name: write "name=value" to require that value of a query parameter, or "name" to require it`},
		{"query no name", CondSpec{Query: []string{"a", "=1"}}, "query", 1, "=1", "has no name"},
		{"query space", CondSpec{Query: []string{"a b=1"}}, "query", 0, "a b=1", `has a space, ";" or "&" in its name: write one a query parameter per element`},
		{"query two", CondSpec{Query: []string{"a&b"}}, "query", 0, "a&b", `has a space, ";" or "&" in its name`},
		{"query control", CondSpec{Query: []string{"a=\x01"}}, "query", 0, "a=\x01", "has a control character: remove it"},
		{"cookie empty", CondSpec{Cookie: []string{""}}, "cookie", 0, "", "value of a cookie"},
		{"cookie two", CondSpec{Cookie: []string{"a;b"}}, "cookie", 0, "a;b", `has a space, ";" or "&" in its name: write one a cookie per element`},
		{"cookie tab", CondSpec{Cookie: []string{"a\tb=1"}}, "cookie", 0, "a\tb=1", "in its name"},
		{"cookie control", CondSpec{Cookie: []string{"s=a\nb"}}, "cookie", 0, "s=a\nb", "has a control character"},
		{"status too big", CondSpec{Status: []string{"600"}}, "status", 0, "600", `is not a status: write a code from 100 to 599, like "404", or a class, like "5xx"`},
		{"status too small", CondSpec{Status: []string{"404", "99"}}, "status", 1, "99", "is not a status"},
		{"status class too big", CondSpec{Status: []string{"6xx"}}, "status", 0, "6xx", "is not a status"},
		{"status class zero", CondSpec{Status: []string{"0xx"}}, "status", 0, "0xx", "is not a status"},
		{"status mixed case class", CondSpec{Status: []string{"5Xx"}}, "status", 0, "5Xx", "is not a status"},
		{"status word", CondSpec{Status: []string{"ok"}}, "status", 0, "ok", "is not a status"},
		{"status empty", CondSpec{Status: []string{""}}, "status", 0, "", "is not a status"},
		{"table without figure", CondSpec{Table: "t", Above: 10}, "figure", -1, "", `is required with table: name what to compare, like "http_req_rate"`},
		{"unknown figure", CondSpec{Table: "t", Figure: "req_rate"}, "figure", -1, "req_rate", `is not a figure: unknown figure "req_rate" (valid: conn_cur, conn_cnt, conn_rate, http_req_cnt, http_req_rate`},
		{"figure without table", CondSpec{Figure: "conn_cur", Above: 1}, "table", -1, "", "is required with figure: name the table whose figure is compared"},
		{"negative above", tab(CondSpec{Above: -1}), "above", -1, "-1", "is negative: write the number the figure must be above"},
		{"above alone", CondSpec{Above: 5}, "above", -1, "5", "needs table and figure: name what must be above it"},
		{"above with src", CondSpec{Src: []string{"10.0.0.0/8"}, Above: 5}, "above", -1, "5", "needs table and figure"},
		{"first problem wins", CondSpec{Src: []string{"x"}, Status: []string{"1"}}, "src", 0, "x", "is neither"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := CompileCond(tc.spec)
			if err == nil {
				t.Fatalf("CompileCond = %+v, want an error", c)
			}
			checkSpec(t, err, tc.key, tc.index, tc.value, tc.frag)
		})
	}
}

func TestCompileCondAccepts(t *testing.T) {
	for _, s := range []CondSpec{
		{Src: []string{"192.0.2.7", "10.0.0.0/8", "2001:db8::/32", "::1", "::ffff:192.0.2.0/120", "::ffff:192.0.2.7", " 10.0.0.1 ", "0.0.0.0/0", "::/0"}},
		{SrcFile: "empty.txt"},
		{SrcFile: "f", SrcLines: []string{"192.0.2.0/24", "2001:db8::1"}},
		{DstPort: []int{1, 443, 65535}},
		{SNI: []string{"*.example.com", "api.test", "[2001:db8::1]"}},
		{Host: []string{"a.test"}, PathPrefix: []string{"/"}, PathRegex: `\.php$`, Method: []string{"GET"}, Header: []string{"X-A: 1", "X-B"}},
		{Path: []string{"/", "/a%20b"}},
		{Query: []string{"a", "a=", "a=b=c", "q=x y"}},
		{Cookie: []string{"session", "lang=fr"}},
		{Status: []string{"100", "404", "599", "1xx", "5xx", "5XX"}},
		{Table: "t", Figure: "conn_cur"},
		{Table: "t", Figure: "http_req_rate", Above: 100},
	} {
		if _, err := CompileCond(s); err != nil {
			t.Errorf("CompileCond(%+v): %v", s, err)
		}
	}
}

func TestCondMatch(t *testing.T) {
	req := reqSubject("GET", "api.example.com:8443", "/admin/users?debug=1&x=2",
		"X-Env", "canary", "X-Debug", "", "Cookie", "a=1; session=xyz", "Cookie", "lang=fr")
	conn := connSubject()
	client := func(s *Subject, a string) *Subject {
		return with(s, func(s *Subject) { s.Client = netip.MustParseAddrPort(a) })
	}
	target := func(s string) *Subject { return with(req, func(r *Subject) { r.Target = []byte(s) }) }
	header := func(kv ...string) *Subject { return with(req, func(r *Subject) { r.Header = fields(kv...) }) }
	status := func(code int) *Subject { return with(req, func(r *Subject) { r.Status = code }) }
	tests := []struct {
		name string
		spec CondSpec
		s    *Subject
		want bool
	}{
		{"src address", CondSpec{Src: []string{"192.0.2.7"}}, conn, true},
		{"src other address", CondSpec{Src: []string{"192.0.2.8"}}, conn, false},
		{"src cidr", CondSpec{Src: []string{"192.0.2.0/24"}}, conn, true},
		{"src second of list", CondSpec{Src: []string{"10.0.0.0/8", "192.0.2.0/24"}}, conn, true},
		{"src none of list", CondSpec{Src: []string{"10.0.0.0/8", "198.51.100.0/24"}}, conn, false},
		{"src mapped client", CondSpec{Src: []string{"192.0.2.0/24"}}, client(conn, "[::ffff:192.0.2.9]:1"), true},
		{"src mapped block", CondSpec{Src: []string{"::ffff:192.0.2.0/120"}}, conn, true},
		{"src mapped address", CondSpec{Src: []string{"::ffff:192.0.2.7"}}, conn, true},
		{"src mapped block other", CondSpec{Src: []string{"::ffff:192.0.2.0/120"}}, client(conn, "192.0.3.1:1"), false},
		{"src ipv6 cidr", CondSpec{Src: []string{"2001:db8::/32"}}, client(conn, "[2001:db8:1::5]:1"), true},
		{"src ipv6 other", CondSpec{Src: []string{"2001:db8::/32"}}, client(conn, "[2001:db9::5]:1"), false},
		{"src ipv6 address", CondSpec{Src: []string{"::1"}}, client(conn, "[::1]:1"), true},
		{"src ipv4 block, ipv6 client", CondSpec{Src: []string{"0.0.0.0/0"}}, client(conn, "[::1]:1"), false},
		{"src trimmed", CondSpec{Src: []string{" 192.0.2.7\t"}}, conn, true},
		{"src no client", CondSpec{Src: []string{"0.0.0.0/0", "::/0"}}, &Subject{}, false},
		{"src_file lines", CondSpec{SrcFile: "f", SrcLines: []string{"10.0.0.0/8", "192.0.2.7"}}, conn, true},
		{"src_file lines miss", CondSpec{SrcFile: "f", SrcLines: []string{"10.0.0.0/8"}}, conn, false},
		{"src_file and src are one list", CondSpec{Src: []string{"10.0.0.0/8"}, SrcFile: "f", SrcLines: []string{"192.0.2.0/24"}}, conn, true},
		{"src_file empty matches no client", CondSpec{SrcFile: "empty.txt"}, conn, false},
		{"src_file empty matches no request", CondSpec{SrcFile: "empty.txt"}, req, false},
		{"dst_port", CondSpec{DstPort: []int{80, 443}}, conn, true},
		{"dst_port other", CondSpec{DstPort: []int{80, 8443}}, conn, false},
		{"dst_port no local", CondSpec{DstPort: []int{443}}, &Subject{Client: testClient}, false},
		{"sni exact", CondSpec{SNI: []string{"api.test"}}, with(req, func(s *Subject) { s.SNI = "API.test" }), true},
		{"sni wildcard", CondSpec{SNI: []string{"*.example.com"}}, with(req, func(s *Subject) { s.SNI = "a.b.example.com" }), true},
		{"sni wildcard apex", CondSpec{SNI: []string{"*.example.com"}}, with(req, func(s *Subject) { s.SNI = "example.com" }), false},
		{"sni long", CondSpec{SNI: []string{"*.example.com"}}, with(req, func(s *Subject) { s.SNI = strings.Repeat("a", 63) + ".example.com" }), true},
		{"sni too long", CondSpec{SNI: []string{"*.example.com"}}, with(req, func(s *Subject) { s.SNI = strings.Repeat("a.", 130) + "example.com" }), false},
		{"sni without tls", CondSpec{SNI: []string{"*.example.com"}}, req, false},
		{"host", CondSpec{Host: []string{"api.example.com"}}, req, true},
		{"host other", CondSpec{Host: []string{"www.example.com"}}, req, false},
		{"host on a connection", CondSpec{Host: []string{"api.example.com"}}, with(req, func(s *Subject) { s.Method = nil }), false},
		{"path", CondSpec{Path: []string{"/login", "/admin/users"}}, req, true},
		{"path is exact", CondSpec{Path: []string{"/admin"}}, req, false},
		{"path without query", CondSpec{Path: []string{"/admin/users"}}, target("/admin/users"), true},
		{"path trailing slash", CondSpec{Path: []string{"/admin/users"}}, target("/admin/users/"), false},
		{"path_prefix", CondSpec{PathPrefix: []string{"/static", "/admin"}}, req, true},
		{"path_prefix other", CondSpec{PathPrefix: []string{"/static"}}, req, false},
		{"path_regex", CondSpec{PathRegex: `^/admin/[a-z]+$`}, req, true},
		{"path_regex without query", CondSpec{PathRegex: `debug`}, req, false},
		{"method", CondSpec{Method: []string{"POST", "GET"}}, req, true},
		{"method other", CondSpec{Method: []string{"POST"}}, req, false},
		{"header value", CondSpec{Header: []string{"X-Env: canary"}}, req, true},
		{"header other value", CondSpec{Header: []string{"X-Env: prod"}}, req, false},
		{"header present", CondSpec{Header: []string{"x-debug"}}, req, true},
		{"header absent", CondSpec{Header: []string{"X-Trace"}}, req, false},
		{"header nil fields", CondSpec{Header: []string{"X-Env"}}, with(req, func(s *Subject) { s.Header = nil }), false},
		{"query value", CondSpec{Query: []string{"debug=1"}}, req, true},
		{"query second param", CondSpec{Query: []string{"x=2"}}, req, true},
		{"query other value", CondSpec{Query: []string{"debug=2"}}, req, false},
		{"query present", CondSpec{Query: []string{"debug"}}, req, true},
		{"query present without value", CondSpec{Query: []string{"trace"}}, target("/?trace"), true},
		{"query present with empty value", CondSpec{Query: []string{"trace"}}, target("/?trace="), true},
		{"query empty value", CondSpec{Query: []string{"q="}}, target("/?q"), true},
		{"query empty value, not empty", CondSpec{Query: []string{"q="}}, target("/?q=1"), false},
		{"query list", CondSpec{Query: []string{"a=1", "x=2"}}, req, true},
		{"query first param wins", CondSpec{Query: []string{"debug=1"}}, target("/?debug=0&debug=1"), false},
		{"query name is whole", CondSpec{Query: []string{"debug"}}, target("/?xdebug=1&debugx=1"), false},
		{"query none", CondSpec{Query: []string{"debug"}}, target("/admin"), false},
		{"query empty", CondSpec{Query: []string{"debug"}}, target("/admin?"), false},
		{"query as sent", CondSpec{Query: []string{"q=a b"}}, target("/?q=a%20b"), false},
		{"query empty params", CondSpec{Query: []string{"a=1"}}, target("/?&&a=1&"), true},
		{"cookie present", CondSpec{Cookie: []string{"session"}}, req, true},
		{"cookie value", CondSpec{Cookie: []string{"session=xyz"}}, req, true},
		{"cookie second field", CondSpec{Cookie: []string{"lang=fr"}}, req, true},
		{"cookie other value", CondSpec{Cookie: []string{"lang=en"}}, req, false},
		{"cookie list", CondSpec{Cookie: []string{"lang=en", "a=1"}}, req, true},
		{"cookie absent", CondSpec{Cookie: []string{"token"}}, req, false},
		{"cookie no fields", CondSpec{Cookie: []string{"session"}}, header("X-A", "1"), false},
		{"cookie nil fields", CondSpec{Cookie: []string{"session"}}, with(req, func(s *Subject) { s.Header = nil }), false},
		{"status code", CondSpec{Status: []string{"404"}}, status(404), true},
		{"status class", CondSpec{Status: []string{"404", "5xx"}}, status(503), true},
		{"status upper class", CondSpec{Status: []string{"5XX"}}, status(500), true},
		{"status other", CondSpec{Status: []string{"404", "5xx"}}, status(200), false},
		{"status class other", CondSpec{Status: []string{"4xx"}}, status(503), false},
		{"status before response", CondSpec{Status: []string{"5xx"}}, req, false},
		{"status on a connection", CondSpec{Status: []string{"5xx"}}, conn, false},
		{"keys are and: all", CondSpec{Src: []string{"192.0.2.0/24"}, DstPort: []int{443}, Path: []string{"/admin/users"}, Method: []string{"GET"}, Query: []string{"debug"}, Cookie: []string{"session"}}, req, true},
		{"keys are and: src", CondSpec{Src: []string{"10.0.0.0/8"}, PathPrefix: []string{"/admin"}}, req, false},
		{"keys are and: path", CondSpec{Src: []string{"192.0.2.0/24"}, PathPrefix: []string{"/api"}}, req, false},
		{"keys are and: cookie", CondSpec{Query: []string{"debug"}, Cookie: []string{"token"}}, req, false},
		{"keys are and: status", CondSpec{PathPrefix: []string{"/admin"}, Status: []string{"5xx"}}, status(404), false},
		{"keys are and: status matches", CondSpec{PathPrefix: []string{"/admin"}, Status: []string{"4xx"}}, status(404), true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCond(t, tc.spec)
			if got := c.Match(tc.s); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestCondConnectionSubject checks that a connection (Method nil) never
// matches a part that reads the request, even one that would match any
// request.
func TestCondConnectionSubject(t *testing.T) {
	conn := connSubject()
	conn.Host, conn.Target, conn.Header = []byte("a.test"), []byte("/?q=1"), fields("Cookie", "c=1", "X-A", "1")
	for _, s := range []CondSpec{
		{Host: []string{"a.test"}},
		{PathPrefix: []string{"/"}},
		{PathRegex: "."},
		{Header: []string{"X-A"}},
		{Path: []string{"/"}},
		{Query: []string{"q"}},
		{Cookie: []string{"c"}},
		{Src: []string{"192.0.2.7"}, Path: []string{"/"}},
	} {
		c := mustCond(t, s)
		if c.Match(conn) {
			t.Errorf("%+v matched a connection", s)
		}
		// The same facts with a method do match.
		r := with(conn, func(s *Subject) { s.Method = []byte("GET") })
		if !c.Match(r) {
			t.Errorf("%+v did not match the request", s)
		}
	}
}

// testNow is the time figures are counted at: the start of a 10s window.
var testNow = time.Unix(1_700_000_000, 0)

// testEntry returns the entry of key in a new table "t", with n requests
// counted at testNow.
func testEntry(t testing.TB, key string, n int) *table.Entry {
	t.Helper()
	tb := table.New(table.Spec{Name: "t", Size: 100, Expire: time.Minute, Period: 10 * time.Second})
	e := tb.Acquire([]byte(key), testNow)
	if e == nil {
		t.Fatal("Acquire returned nil")
	}
	t.Cleanup(e.Release)
	for range n {
		e.Request(testNow)
	}
	return e
}

func TestCondTable(t *testing.T) {
	e := testEntry(t, "192.0.2.7", 5)
	e.ConnOpened(testNow)
	tracked := func(tr ...Track) *Subject {
		s := connSubject()
		copy(s.Tracked[:], tr)
		s.Now = testNow
		return s
	}
	second := tracked(Track{Name: "other", Entry: testEntry(t, "x", 50)}, Track{Name: "t", Entry: e})
	tests := []struct {
		name   string
		figure string
		above  int
		s      *Subject
		want   bool
	}{
		{"rate above", "http_req_rate", 4, second, true},
		{"rate not above", "http_req_rate", 5, second, false},
		{"count above", "http_req_cnt", 4, second, true},
		{"count not above", "http_req_cnt", 5, second, false},
		{"above 0", "http_req_cnt", 0, second, true},
		{"conn_cur", "conn_cur", 0, second, true},
		{"conn_cur not above", "conn_cur", 1, second, false},
		{"zero figure", "http_err_cnt", 0, second, false},
		{"first slot", "http_req_cnt", 4, tracked(Track{Name: "t", Entry: e}), true},
		{"no entry", "http_req_cnt", 0, tracked(Track{Name: "t"}), false},
		{"not tracked", "http_req_cnt", 0, tracked(Track{Name: "other", Entry: e}), false},
		{"nothing tracked", "http_req_cnt", 0, tracked(), false},
		{"request subject", "http_req_rate", 4, with(second, func(s *Subject) { s.Method, s.Target = []byte("GET"), []byte("/") }), true},
		{"later window", "http_req_rate", 4, with(second, func(s *Subject) { s.Now = testNow.Add(25 * time.Second) }), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := mustCond(t, CondSpec{Name: "busy", Table: "t", Figure: tc.figure, Above: tc.above})
			if got := c.Match(tc.s); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
	c := mustCond(t, CondSpec{Src: []string{"192.0.2.0/24"}, Table: "t", Figure: "http_req_cnt", Above: 4})
	if !c.Match(second) {
		t.Error("src and figure did not match")
	}
	if c.Match(with(second, func(s *Subject) { s.Client = netip.MustParseAddrPort("10.0.0.1:1") })) {
		t.Error("src and figure matched another client")
	}
}

func TestCondLevel(t *testing.T) {
	tests := []struct {
		name string
		spec CondSpec
		want Level
	}{
		{"src", CondSpec{Src: []string{"10.0.0.0/8"}}, LevelConnection},
		{"src_file", CondSpec{SrcFile: "f", SrcLines: []string{"10.0.0.0/8"}}, LevelConnection},
		{"dst_port", CondSpec{DstPort: []int{443}}, LevelConnection},
		{"table", CondSpec{Table: "t", Figure: "conn_rate", Above: 10}, LevelConnection},
		{"sni", CondSpec{SNI: []string{"a.test"}}, LevelConnection},
		{"host", CondSpec{Host: []string{"a.test"}}, LevelRequest},
		{"path", CondSpec{Path: []string{"/"}}, LevelRequest},
		{"path_prefix", CondSpec{PathPrefix: []string{"/"}}, LevelRequest},
		{"path_regex", CondSpec{PathRegex: "."}, LevelRequest},
		{"method", CondSpec{Method: []string{"GET"}}, LevelRequest},
		{"header", CondSpec{Header: []string{"X-A"}}, LevelRequest},
		{"query", CondSpec{Query: []string{"a"}}, LevelRequest},
		{"cookie", CondSpec{Cookie: []string{"a"}}, LevelRequest},
		{"src and path", CondSpec{Src: []string{"10.0.0.0/8"}, Path: []string{"/"}}, LevelRequest},
		{"status", CondSpec{Status: []string{"5xx"}}, LevelResponse},
		{"src and status", CondSpec{Src: []string{"10.0.0.0/8"}, Status: []string{"5xx"}}, LevelResponse},
		{"path and status", CondSpec{Status: []string{"5xx"}, Path: []string{"/"}}, LevelResponse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := mustCond(t, tc.spec).Level(); got != tc.want {
				t.Errorf("Level = %v, want %v", got, tc.want)
			}
		})
	}

	c := mustCond(t, CondSpec{Table: "t", Figure: "http_req_rate", Above: 10})
	c.RaiseTo(LevelRequest)
	if c.Level() != LevelRequest {
		t.Errorf("after RaiseTo(request), Level = %v", c.Level())
	}
	c.RaiseTo(LevelConnection)
	if c.Level() != LevelRequest {
		t.Errorf("RaiseTo(connection) lowered the level to %v", c.Level())
	}
	c.RaiseTo(LevelResponse)
	if c.Level() != LevelResponse {
		t.Errorf("after RaiseTo(response), Level = %v", c.Level())
	}
	for l, want := range map[Level]string{LevelConnection: "connection", LevelRequest: "request", LevelResponse: "response"} {
		if l.String() != want {
			t.Errorf("Level(%d).String() = %q, want %q", l, l.String(), want)
		}
	}
}

func TestCondAccessors(t *testing.T) {
	c := mustCond(t, CondSpec{Name: "busy", Table: "t", Figure: "conn_cur"})
	if c.Name() != "busy" || c.Table() != "t" {
		t.Errorf("Name, Table = %q, %q", c.Name(), c.Table())
	}
	c = mustCond(t, CondSpec{Name: "office", Src: []string{"10.0.0.0/8"}})
	if c.Name() != "office" || c.Table() != "" {
		t.Errorf("Name, Table = %q, %q", c.Name(), c.Table())
	}
}

func TestQueryParam(t *testing.T) {
	tests := []struct {
		query, name string
		want        string
		ok          bool
	}{
		{"a=1&b=2", "a", "1", true},
		{"a=1&b=2", "b", "2", true},
		{"a=1&b=2", "c", "", false},
		{"a=1&a=2", "a", "1", true},
		{"a&a=2", "a", "", true},
		{"a=&b", "a", "", true},
		{"a=b=c", "a", "b=c", true},
		{"ab=1&a=2", "a", "2", true},
		{"", "a", "", false},
		{"&&", "a", "", false},
		{"&&a=3&", "a", "3", true},
		{"x=1&&a=3", "a", "3", true},
		{"a%20b=1", "a b", "", false},
		{"a%20b=1", "a%20b", "1", true},
		{"=1", "", "1", true},
	}
	for _, tc := range tests {
		t.Run(tc.query+"/"+tc.name, func(t *testing.T) {
			v, ok := QueryParam([]byte(tc.query), tc.name)
			if string(v) != tc.want || ok != tc.ok {
				t.Errorf("QueryParam(%q, %q) = %q, %v, want %q, %v", tc.query, tc.name, v, ok, tc.want, tc.ok)
			}
		})
	}
}
