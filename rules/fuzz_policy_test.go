package rules

import (
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"lb/table"
)

// exprColumn finds the column an expression error names.
var exprColumn = regexp.MustCompile(`^at column ([0-9]+): `)

// FuzzCompileExpr checks that CompileExpr never panics and returns a
// *SpecError about "when" or an expression that matches without panicking,
// whose String is the input, whose Level is its conditions', and whose
// negation, when it compiles, matches exactly when it does not.
func FuzzCompileExpr(f *testing.F) {
	for _, s := range []string{
		"a", "not a", "!a", "a and b or c", "a && b || !c", "(a or b) and not (c)", "a and (b or (c and not a))",
		" a\tand\nb ", "a and not b or not c and a", "((((a))))",
		"", " ", "x", "a b", "a and", "and", "(a", "a)", "()", "a & b", "a | b", "a &&& b", "a and é", "\xff",
		"not not not", strings.Repeat("!", 66) + "a", strings.Repeat("(", 66) + "a" + strings.Repeat(")", 66),
		"a-b.c_d", "A", "a or\x00b",
	} {
		f.Add(s)
	}
	conds := bitConds(f)
	subjects := bitSubjects()
	f.Fuzz(func(t *testing.T, src string) {
		e, err := CompileExpr(src, conds)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want a *SpecError", err, err)
			}
			if se.Key != "when" || se.Index != -1 || se.Msg == "" || !strings.Contains(se.Msg, ": ") {
				t.Fatalf("malformed error %+v", se)
			}
			switch {
			case len(src) > maxExprLen:
				if se.Value != clip(src, 32) {
					t.Fatalf("error value %q for an expression of %d bytes", se.Value, len(src))
				}
			case strings.HasPrefix(se.Msg, "is empty"):
				if strings.TrimLeft(src, " \t\r\n") != "" {
					t.Fatalf("%q: %v", src, err)
				}
			default:
				m := exprColumn.FindStringSubmatch(se.Msg)
				if se.Value != src || m == nil {
					t.Fatalf("%q: error without the expression or its column: %+v", src, se)
				}
				if col, _ := strconv.Atoi(m[1]); col < 1 || col > len(src)+1 {
					t.Fatalf("%q: column %d out of range", src, col)
				}
			}
			return
		}
		if e.String() != src {
			t.Fatalf("String() = %q, want %q", e.String(), src)
		}
		n := 0
		e.Conds(func(c *Cond) {
			if conds[c.Name()] != c {
				t.Fatalf("Conds visited %v, not one of the map's", c.Name())
			}
			n++
		})
		if n == 0 {
			t.Fatalf("%q compiled without a condition", src)
		}
		if e.Level() != LevelConnection {
			t.Fatalf("Level = %v", e.Level())
		}
		var got [8]bool
		for k, s := range subjects {
			got[k] = e.Match(s)
		}
		not, err := CompileExpr("not ("+src+")", conds)
		if err != nil {
			if msg := err.Error(); !strings.Contains(msg, "nested deeper than") && !strings.Contains(msg, "is longer than") {
				t.Fatalf("%q compiled, but its negation did not: %v", src, err)
			}
			return
		}
		for k, s := range subjects {
			if not.Match(s) == got[k] {
				t.Fatalf("%q and its negation agree on 10.0.0.%d: %v", src, k, got[k])
			}
		}
	})
}

// condKeys are the keys a CondSpec error may name.
var condKeys = []string{"", "src", "src_file", "dst_port", "sni", "host", "path", "path_prefix", "path_regex", "method", "header", "query", "cookie", "status", "table", "figure", "above"}

// FuzzCompileCond checks that CompileCond never panics and returns a
// *SpecError about the right element or a condition that matches without
// panicking; and that conditions of one key match what they name.
func FuzzCompileCond(f *testing.F) {
	f.Add("192.0.2.0/24", "debug=1", "session", "5xx", "/login", "t", "http_req_rate", 4)
	f.Add("::ffff:192.0.2.7", "trace", "lang=fr", "404", "/", "", "", 0)
	f.Add("2001:db8::/32", "a=", "a=b=c", "1xx", "/a%20b", "t", "conn_cur", 0)
	f.Add("10.1.2.3/8", "=1", "", "600", "a", "t", "", 0)
	f.Add("fe80::1%eth0", "a b", "a;b", "5Xx", "/a?b", "", "conn_rate", 3)
	f.Add(" 10.0.0.1 ", "a=\x01", "s=\n", "+404", "https://a/", "t", "nope", -1)
	f.Add("", "", "", "", "", "", "", 5)
	f.Add("::/0", "q=a&b", "c= v ", "099", "/é", "t", "bytes_out_rate", 1<<40)
	e := testEntry(f, "192.0.2.7", 5)
	req := reqSubject("GET", "api.example.com", "/login?debug=1&trace", "Cookie", "session=1; lang=fr")
	req.Tracked[0] = Track{Name: "t", Entry: e}
	req.Now = testNow
	subjects := []*Subject{req, connSubject(), with(req, func(s *Subject) { s.Status = 503 }), {}}
	f.Fuzz(func(t *testing.T, src, query, cookie, status, path, tab, figure string, above int) {
		spec := CondSpec{Src: list(src), Query: list(query), Cookie: list(cookie), Status: list(status), Path: list(path),
			Table: tab, Figure: figure, Above: above}
		c, err := CompileCond(spec)
		if err != nil {
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want a *SpecError", err, err)
			}
			if !slices.Contains(condKeys, se.Key) || se.Msg == "" {
				t.Fatalf("malformed error %+v", se)
			}
			want := map[string]string{"src": src, "query": query, "cookie": cookie, "status": status, "path": path, "table": "", "above": strconv.Itoa(above)}
			if se.Key == "figure" && figure != "" {
				want["figure"] = figure
			}
			if v, ok := want[se.Key]; ok && se.Value != v {
				t.Fatalf("error %+v, with the wrong value", se)
			}
			return
		}
		for _, s := range subjects {
			c.Match(s)
		}
		// Each key alone matches what it names.
		if src != "" {
			c := mustCond(t, CondSpec{Src: []string{src}})
			a, err := netip.ParseAddr(strings.TrimSpace(src))
			if err != nil {
				a = netip.MustParsePrefix(strings.TrimSpace(src)).Addr()
			}
			if !c.Match(&Subject{Client: netip.AddrPortFrom(a, 1)}) {
				t.Fatalf("src %q does not match %v", src, a)
			}
		}
		if query != "" && !strings.ContainsAny(query, "&") {
			c := mustCond(t, CondSpec{Query: []string{query}})
			if !c.Match(with(req, func(s *Subject) { s.Target = []byte("/?" + query) })) {
				t.Fatalf("query %q does not match itself", query)
			}
		}
		if status != "" {
			c := mustCond(t, CondSpec{Status: []string{status}})
			code, err := strconv.Atoi(status)
			if err != nil {
				code = int(status[0]-'0') * 100
			}
			if !c.Match(with(req, func(s *Subject) { s.Status = code })) {
				t.Fatalf("status %q does not match %d", status, code)
			}
		}
		if path != "" {
			c := mustCond(t, CondSpec{Path: []string{path}})
			if !c.Match(with(req, func(s *Subject) { s.Target = []byte(path + "?x") })) {
				t.Fatalf("path %q does not match itself", path)
			}
		}
		if figure != "" {
			// The figure alone: the subject tracks only table "t".
			c := mustCond(t, CondSpec{Table: tab, Figure: figure, Above: above})
			f, _ := table.ParseFigure(figure)
			want := tab == "t" && e.Get(f, testNow) > uint64(above)
			if got := c.Match(&Subject{Tracked: req.Tracked, Now: testNow}); got != want {
				t.Fatalf("table %q figure %s above %d: Match = %v, want %v", tab, figure, above, got, want)
			}
		}
	})
}
