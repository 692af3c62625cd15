package rules

import (
	"errors"
	"strings"
	"testing"
)

// mustRoute compiles a route or fails the test.
func mustRoute(t testing.TB, s RouteSpec) *Route {
	t.Helper()
	r, err := CompileRoute(s)
	if err != nil {
		t.Fatalf("CompileRoute(%+v): %v", s, err)
	}
	return r
}

// testTable is a table with a route of each kind, and some combined; the
// target of each route is 10 + its index.
func testTable(t testing.TB) *Table {
	specs := []RouteSpec{
		{Host: []string{"api.example.com"}},                                        // 10
		{Host: []string{"*.example.com"}, PathPrefix: []string{"/static/"}},        // 11
		{Host: []string{"[::1]", "[2001:db8::5]"}},                                 // 12
		{PathPrefix: []string{"/admin", "/ops/"}, Method: []string{"POST", "PUT"}}, // 13
		{PathRegex: `^/users/[0-9]+$`},                                             // 14
		{Header: []string{"X-Env: canary"}},                                        // 15
		{Header: []string{"X-Debug"}, PathPrefix: []string{"/debug"}},              // 16
		{Method: []string{"DELETE"}},                                               // 17
		{Host: []string{"example.com"}},                                            // 18
		{Header: []string{"X-Empty:"}},                                             // 19
		{Host: []string{"127.0.0.1", "*.internal"}},                                // 20
		{Host: []string{"all.test"}, PathPrefix: []string{"/a"}, PathRegex: `/b$`, // 21
			Method: []string{"GET"}, Header: []string{"X-A: 1", "X-B"}},
	}
	routes := make([]*Route, len(specs))
	targets := make([]int, len(specs))
	for i, s := range specs {
		routes[i] = mustRoute(t, s)
		targets[i] = 10 + i
	}
	return NewTable(routes, targets)
}

func TestTableLookup(t *testing.T) {
	table := testTable(t)
	tests := []struct {
		name               string
		method, host, path string
		h                  *fakeHeader
		want               int // -1: no match
	}{
		{"exact host", "GET", "api.example.com", "/", nil, 10},
		{"exact host with port and upper case", "GET", "API.Example.COM:8443", "/x", nil, 10},
		{"exact host with final dot", "GET", "api.example.com.", "/", nil, 10},
		{"exact host with empty port", "GET", "api.example.com:", "/", nil, 10},
		{"first match wins over wildcard", "GET", "api.example.com", "/static/a.css", nil, 10},
		{"first match wins over method", "POST", "api.example.com", "/admin", nil, 10},
		{"exact host is not a prefix", "GET", "api.example.com.evil", "/", nil, -1},
		{"host with bad port", "GET", "api.example.com:https", "/", nil, -1},
		{"empty host", "GET", "", "/", nil, -1},
		{"wildcard one level", "GET", "a.example.com", "/static/x.css", nil, 11},
		{"wildcard two levels", "GET", "a.b.EXAMPLE.com:80", "/static/", nil, 11},
		{"wildcard needs its path", "GET", "a.example.com", "/other", nil, -1},
		{"wildcard not apex", "GET", "example.com", "/static/x", nil, 18},
		{"wildcard not empty label", "GET", ".example.com", "/static/x", nil, -1},
		{"wildcard not a suffix of a label", "GET", "badexample.com", "/static/x", nil, -1},
		{"ipv6 host", "GET", "[::1]", "/", nil, 12},
		{"ipv6 host with port", "GET", "[::1]:8080", "/", nil, 12},
		{"ipv6 host spelled long", "GET", "[0:0:0:0:0:0:0:1]", "/", nil, 12},
		{"ipv6 host upper case", "GET", "[2001:DB8::5]", "/", nil, 12},
		{"ipv6 other address", "GET", "[::2]", "/", nil, -1},
		{"ipv6 garbage", "GET", "[::g]", "/", nil, -1},
		{"ipv6 unclosed", "GET", "[::1", "/", nil, -1},
		{"ipv4 host", "GET", "127.0.0.1:80", "/", nil, 20},
		{"second wildcard of list", "GET", "db.internal", "/", nil, 20},
		{"prefix and method", "POST", "x", "/admin/users", nil, 13},
		{"prefix is a byte prefix", "PUT", "x", "/administrators", nil, 13},
		{"second prefix", "PUT", "x", "/ops/run", nil, 13},
		{"prefix not matched", "POST", "x", "/ops", nil, -1},
		{"method not matched", "GET", "x", "/admin", nil, -1},
		{"regex", "GET", "x", "/users/42", nil, 14},
		{"regex ignores query", "GET", "x", "/users/42?tab=1", nil, 14},
		{"regex not matched", "GET", "x", "/users/abc", nil, -1},
		{"regex anchored", "GET", "x", "/users/42/", nil, -1},
		{"header value", "GET", "x", "/", hdr("X-Env", "canary"), 15},
		{"header value with OWS", "GET", "x", "/", hdr("x-env", " canary\t"), 15},
		{"header value is case-sensitive", "GET", "x", "/", hdr("X-Env", "Canary"), -1},
		{"header value is the first field's", "GET", "x", "/", hdr("X-Env", "prod", "X-Env", "canary"), -1},
		{"header presence and path", "GET", "x", "/debug/pprof", hdr("X-Debug", ""), 16},
		{"header presence without path", "GET", "x", "/", hdr("X-Debug", "1"), -1},
		{"header missing", "GET", "x", "/debug", hdr("X-Other", "1"), -1},
		{"method alone", "DELETE", "x", "/", nil, 17},
		{"method is case-sensitive", "delete", "x", "/", nil, -1},
		{"header with empty value", "GET", "x", "/", hdr("X-Empty", "  "), 19},
		{"header with empty value, not empty", "GET", "x", "/", hdr("X-Empty", "a"), -1},
		{"all conditions", "GET", "ALL.test:1", "/a/b?q", hdr("X-A", "1", "X-B", "2"), 21},
		{"all conditions but the header value", "GET", "all.test", "/a/b", hdr("X-A", "2", "X-B", "2"), -1},
		{"all conditions but the second header", "GET", "all.test", "/a/b", hdr("X-A", "1"), -1},
		{"all conditions but the regex", "GET", "all.test", "/a/c", hdr("X-A", "1", "X-B", "2"), -1},
		{"all conditions but the method", "HEAD", "all.test", "/a/b", hdr("X-A", "1", "X-B", "2"), -1},
		{"nothing matches", "GET", "nowhere", "/", hdr(), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var h Header
			if tc.h != nil {
				h = tc.h
			}
			got, ok := table.Lookup([]byte(tc.method), []byte(tc.host), []byte(tc.path), h)
			switch {
			case tc.want < 0 && ok:
				t.Errorf("Lookup = %d, want no match", got)
			case tc.want >= 0 && (!ok || got != tc.want):
				t.Errorf("Lookup = %d, %v, want %d", got, ok, tc.want)
			}
		})
	}
}

func TestTableEdges(t *testing.T) {
	var nilTable *Table
	if _, ok := nilTable.Lookup([]byte("GET"), []byte("x"), []byte("/"), nil); ok {
		t.Error("a nil table matched")
	}
	if _, ok := NewTable(nil, nil).Lookup([]byte("GET"), []byte("x"), []byte("/"), nil); ok {
		t.Error("an empty table matched")
	}
	r := mustRoute(t, RouteSpec{Method: []string{"GET"}})
	routes, targets := []*Route{r}, []int{7}
	table := NewTable(routes, targets)
	targets[0] = 8 // the table keeps its own copy
	if got, ok := table.Lookup([]byte("GET"), nil, nil, nil); !ok || got != 7 {
		t.Errorf("Lookup = %d, %v, want 7", got, ok)
	}
	for _, tc := range []struct {
		name    string
		routes  []*Route
		targets []int
	}{
		{"lengths differ", []*Route{r}, nil},
		{"nil route", []*Route{nil}, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("NewTable did not panic")
				}
			}()
			NewTable(tc.routes, tc.targets)
		})
	}
}

func TestHeaderConditionWithoutHeader(t *testing.T) {
	r := mustRoute(t, RouteSpec{Header: []string{"X-A"}})
	if r.Match([]byte("GET"), []byte("x"), []byte("/"), nil) {
		t.Error("a header condition matched a nil Header")
	}
}

func TestHostMatch(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"example.com", "example.com", true},
		{"example.com", "EXAMPLE.COM", true},
		{"Example.COM", "example.com", true},
		{"example.com", "example.com:443", true},
		{"example.com", "example.com.", true},
		{"example.com.", "example.com", true},
		{"example.com", "example.com.:80", true},
		{"example.com", "example.co", false},
		{"example.com", "www.example.com", false},
		{"example.com", "example.com:", true},
		{"example.com", "example.com:80:80", false},
		{"example.com", "example.com..", false},
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.c.example.com", true},
		{"*.example.com", "A.EXAMPLE.COM:1", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", ".example.com", false},
		{"*.example.com", "a..example.com", false},
		{"*.example.com", "aexample.com", false},
		{"*.example.com", "a.example.org", false},
		{"*.com", "example.com", true},
		{"*.example.com.", "a.example.com", true},
		{"under_score.example", "Under_Score.example", true},
		{"192.0.2.1", "192.0.2.1:8080", true},
		{"192.0.2.1", "192.0.2.10", false},
		{"[::1]", "[::1]", true},
		{"[::1]", "[::1]:443", true},
		{"[::1]", "[0::1]", true},
		{"[::1]", "[0000:0000:0000:0000:0000:0000:0000:0001]", true},
		{"[::1]", "[::1]x", false},
		{"[::1]", "[::1]:x", false},
		{"[::1]", "::1", false},
		{"[::1]", "[::1%eth0]", false},
		{"[2001:DB8::1]", "[2001:db8:0:0::1]", true},
		{"[::ffff:192.0.2.1]", "[::ffff:c000:201]", true},
		{"[::ffff:192.0.2.1]", "192.0.2.1", false},
		{"[2001:db8::]", "[2001:db8::]", true},
		{"[2001:db8::]", "[2001:db8::1]", false},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" "+tc.host, func(t *testing.T) {
			r := mustRoute(t, RouteSpec{Host: []string{tc.pattern}})
			if got := r.Match([]byte("GET"), []byte(tc.host), []byte("/"), nil); got != tc.want {
				t.Errorf("match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileRouteErrors(t *testing.T) {
	tests := []struct {
		name  string
		spec  RouteSpec
		key   string
		index int
		frag  string // a part of the message saying what to do
	}{
		{"no condition", RouteSpec{}, "", -1, "a route needs at least one condition: host, path_prefix, path_regex, method, header or when"},
		{"empty lists", RouteSpec{Host: []string{}, Method: []string{}}, "", -1, "at least one condition"},
		{"empty host", RouteSpec{Host: []string{""}}, "host", 0, `is empty: write a host name like "api.example.com"`},
		{"star alone", RouteSpec{Host: []string{"a.com", "*"}}, "host", 1, `remove it, or write "*.example.com"`},
		{"star in label", RouteSpec{Host: []string{"*foo.com"}}, "host", 0, `has "*" inside a label: a wildcard must be the whole first label`},
		{"star in middle", RouteSpec{Host: []string{"a.*.com"}}, "host", 0, `has "*" past the first label`},
		{"two stars", RouteSpec{Host: []string{"*.*.com"}}, "host", 0, `has "*" past the first label`},
		{"star and nothing", RouteSpec{Host: []string{"*."}}, "host", 0, `has no domain after "*.": write one`},
		{"port", RouteSpec{Host: []string{"a.com:8443"}}, "host", 0, `has a port: remove ":8443"`},
		{"ipv6 port", RouteSpec{Host: []string{"[::1]:80"}}, "host", 0, `has a port: remove ":80"`},
		{"ipv6 without brackets", RouteSpec{Host: []string{"2001:db8::1"}}, "host", 0, `write "[2001:db8::1]"`},
		{"ipv6 unclosed", RouteSpec{Host: []string{"[::1"}}, "host", 0, `has "[" but no "]"`},
		{"ipv6 trailing text", RouteSpec{Host: []string{"[::1]x"}}, "host", 0, `has text after "]"`},
		{"ipv6 invalid", RouteSpec{Host: []string{"[::g]"}}, "host", 0, "is not a valid IPv6 address"},
		{"ipv4 in brackets", RouteSpec{Host: []string{"[192.0.2.1]"}}, "host", 0, `write it without brackets, as "192.0.2.1"`},
		{"ipv6 zone", RouteSpec{Host: []string{"[fe80::1%eth0]"}}, "host", 0, `has a zone ("%eth0")`},
		{"leading dot", RouteSpec{Host: []string{".example.com"}}, "host", 0, `write "*.example.com" for the subdomains`},
		{"empty label", RouteSpec{Host: []string{"a..com"}}, "host", 0, `remove the extra "."`},
		{"dot alone", RouteSpec{Host: []string{"."}}, "host", 0, "is not a host name"},
		{"invalid char", RouteSpec{Host: []string{"a b.com"}}, "host", 0, `contains a space, which cannot appear in a host name: use letters, digits`},
		{"colon not port", RouteSpec{Host: []string{"a.com:x"}}, "host", 0, `contains ":", which cannot appear in a host name`},
		{"slash", RouteSpec{Host: []string{"a.com/api"}}, "host", 0, "match paths with path_prefix"},
		{"url", RouteSpec{Host: []string{"https://a.com"}}, "host", 0, "is a URL: write only its host name"},
		{"unicode", RouteSpec{Host: []string{"bücher.de"}}, "host", 0, `contains "ü": write an internationalized name in its ASCII form`},
		{"long label", RouteSpec{Host: []string{strings.Repeat("a", 64) + ".com"}}, "host", 0, "has a label of 64 characters: DNS allows at most 63"},
		{"long name", RouteSpec{Host: []string{strings.Repeat("abcdefghi.", 26) + "com"}}, "host", 0, "is 263 characters long: a host name has at most 253"},
		{"empty prefix", RouteSpec{PathPrefix: []string{""}}, "path_prefix", 0, `is empty: write a prefix starting with "/"`},
		{"relative prefix", RouteSpec{PathPrefix: []string{"/a", "api"}}, "path_prefix", 1, `does not start with "/": write "/api"`},
		{"url prefix", RouteSpec{PathPrefix: []string{"http://a/b"}}, "path_prefix", 0, `is a URL: write only its path`},
		{"query in prefix", RouteSpec{PathPrefix: []string{"/a?b=1"}}, "path_prefix", 0, "paths are matched without the query: remove the query"},
		{"fragment in prefix", RouteSpec{PathPrefix: []string{"/a#top"}}, "path_prefix", 0, "clients do not send the fragment: remove it"},
		{"space in prefix", RouteSpec{PathPrefix: []string{"/a b"}}, "path_prefix", 0, "contains a space, which clients send percent-encoded: write %20 instead"},
		{"unicode in prefix", RouteSpec{PathPrefix: []string{"/café"}}, "path_prefix", 0, "write %C3%A9 instead"},
		{"bad regex", RouteSpec{PathRegex: "^(/"}, "path_regex", -1, "is not a valid regular expression: missing closing ): fix it in Go's RE2 syntax"},
		{"bad escape", RouteSpec{PathRegex: `^/\q`}, "path_regex", -1, "invalid escape sequence at `\\q`"},
		{"lookahead", RouteSpec{PathRegex: `^/(?!admin)`}, "path_regex", -1, "RE2 has no lookahead"},
		{"backreference", RouteSpec{PathRegex: `^/(a)\1`}, "path_regex", -1, "invalid escape sequence at `\\1` (RE2 has no backreferences)"},
		{"big repeat", RouteSpec{PathRegex: `^(a{100}){100}$`}, "path_regex", -1, "invalid repeat count at `{100}` (a count is at most 1000"},
		{"deep regex", RouteSpec{PathRegex: strings.Repeat("(", 1001) + strings.Repeat(")", 1001)}, "path_regex", -1, "is too complex (expression nests too deeply): write a simpler regular expression"},
		{"empty method", RouteSpec{Method: []string{""}}, "method", 0, `is empty: write a method, like "GET"`},
		{"methods in one string", RouteSpec{Method: []string{"GET", "PUT, POST"}}, "method", 1, `write each as its own element, like ["GET", "HEAD"]`},
		{"method not a token", RouteSpec{Method: []string{"GE/T"}}, "method", 0, `contains "/", which cannot appear in a method`},
		{"lower-case method", RouteSpec{Method: []string{"get"}}, "method", 0, `methods are case-sensitive: write "GET"`},
		{"empty header", RouteSpec{Header: []string{""}}, "header", 0, `is empty: write "Name: value" to require that value, or "Name" to require the field`},
		{"header without name", RouteSpec{Header: []string{": x"}}, "header", 0, `has no field name before ":"`},
		{"header space before colon", RouteSpec{Header: []string{"X-A : b"}}, "header", 0, `has whitespace before ":"`},
		{"header without colon", RouteSpec{Header: []string{"X-A b"}}, "header", 0, `has whitespace but no ":"`},
		{"header bad name", RouteSpec{Header: []string{"X-A=b"}}, "header", 0, `has "=" in its field name`},
		{"header bad value", RouteSpec{Header: []string{"X-A", "X-B: a\nb"}}, "header", 1, `has a line feed (\n) in its value, which field values cannot contain: remove it`},
		{"first problem wins", RouteSpec{Host: []string{"*"}, Method: []string{""}}, "host", 0, "remove it"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := CompileRoute(tc.spec)
			if err == nil {
				t.Fatalf("CompileRoute = %v, want an error", r)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want a *SpecError", err, err)
			}
			checkSpecError(t, se, tc.key, tc.index, tc.frag)
			if want := routeValue(tc.spec, tc.key, tc.index); se.Value != want {
				t.Errorf("Value = %q, want %q", se.Value, want)
			}
		})
	}
}

// routeValue returns the value of a spec's key (its element index, for a
// list key).
func routeValue(s RouteSpec, key string, index int) string {
	lists := map[string][]string{"host": s.Host, "path_prefix": s.PathPrefix, "method": s.Method, "header": s.Header}
	switch {
	case key == "path_regex":
		return s.PathRegex
	case index >= 0:
		return lists[key][index]
	}
	return ""
}

// checkSpecError checks a SpecError's key, index and message.
func checkSpecError(t *testing.T, se *SpecError, key string, index int, frag string) {
	t.Helper()
	if se.Key != key || se.Index != index {
		t.Errorf("error at %q[%d], want %q[%d]: %v", se.Key, se.Index, key, index, se)
	}
	if !strings.Contains(se.Msg, frag) {
		t.Errorf("message %q lacks %q", se.Msg, frag)
	}
	// The message tells what to do, after what is wrong, and does not
	// repeat the key the caller prints.
	if !strings.Contains(se.Msg, ": ") {
		t.Errorf("message %q does not say what to do", se.Msg)
	}
	if key != "" && (strings.HasPrefix(se.Msg, key+" ") || strings.HasPrefix(se.Msg, key+":")) {
		t.Errorf("message %q repeats the key", se.Msg)
	}
	if se.Msg == "" || se.Msg[0] < 'a' || se.Msg[0] > 'z' {
		t.Errorf("message %q does not start with a lower-case letter", se.Msg)
	}
}

func TestCompileRouteAccepts(t *testing.T) {
	for _, s := range []RouteSpec{
		{Host: []string{"a"}},
		{Host: []string{"*.a"}},
		{Host: []string{"xn--bcher-kva.de", "under_score.example", "[2001:db8::1]", "[::ffff:192.0.2.1]", "192.0.2.1"}},
		{Host: []string{strings.Repeat("a", 63) + ".com"}},
		{PathPrefix: []string{"/"}},
		{PathPrefix: []string{"/a%20b/"}},
		{PathRegex: `\.php$`},
		{Method: []string{"GET", "PROPFIND", "purge"}},
		{Header: []string{"X-A:", "X-B: a: b", "X-C:\tv\t", "X-D"}},
	} {
		if _, err := CompileRoute(s); err != nil {
			t.Errorf("CompileRoute(%+v): %v", s, err)
		}
	}
}

func TestSpecErrorString(t *testing.T) {
	tests := []struct {
		e    SpecError
		want string
	}{
		{SpecError{Key: "host", Index: 2, Value: "*foo.com", Msg: "is bad"}, `host "*foo.com": is bad`},
		{SpecError{Key: "header", Index: 0, Value: "X: a\nb", Msg: "is bad"}, `header "X: a\nb": is bad`},
		{SpecError{Key: "path_regex", Index: -1, Value: `^\q`, Msg: "bad"}, `path_regex "^\\q": bad`},
		{SpecError{Key: "action", Index: -1, Msg: "is missing"}, "action: is missing"},
		{SpecError{Index: -1, Msg: noCondition}, noCondition},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.e.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestMatchAllocs(t *testing.T) {
	table := testTable(t)
	h := hdr("X-A", "1", "X-B", "2", "X-Env", "prod")
	requests := []struct {
		method, host, path string
		regex              bool // a regexp runs, whose pool of matchers sync.Pool holds
	}{
		{"GET", "all.test", "/a/b?q=1", true},
		{"GET", "[0::1]:8443", "/", false},
		{"GET", "a.b.example.com", "/static/x", false},
		{"GET", "nowhere", "/users/42", true},
		{"GET", "nowhere", "/none", true},
		{"POST", "x", "/ops/", false},
	}
	for _, rq := range requests {
		if rq.regex && raceEnabled {
			continue
		}
		m, host, path := []byte(rq.method), []byte(rq.host), []byte(rq.path)
		allocs := testing.AllocsPerRun(100, func() {
			table.Lookup(m, host, path, h)
		})
		if allocs != 0 {
			t.Errorf("Lookup(%s %s %s) allocates %v times", rq.method, rq.host, rq.path, allocs)
		}
	}
}
