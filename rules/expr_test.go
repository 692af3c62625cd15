package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// bitConds returns conditions a, b and c on src, such that a client at
// 10.0.0.k matches a when bit 0 of k is set, b for bit 1 and c for bit 2.
func bitConds(t testing.TB) map[string]*Cond {
	t.Helper()
	conds := map[string]*Cond{}
	for bit, name := range []string{"a", "b", "c"} {
		var src []string
		for k := range 8 {
			if k&(1<<bit) != 0 {
				src = append(src, fmt.Sprintf("10.0.0.%d", k))
			}
		}
		conds[name] = mustCond(t, CondSpec{Name: name, Src: src})
	}
	return conds
}

// bitSubjects returns the connections from 10.0.0.0 to 10.0.0.7.
func bitSubjects() []*Subject {
	s := make([]*Subject, 8)
	for k := range s {
		s[k] = &Subject{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(k)}), 1)}
	}
	return s
}

func mustExpr(t testing.TB, src string, conds map[string]*Cond) *Expr {
	t.Helper()
	e, err := CompileExpr(src, conds)
	if err != nil {
		t.Fatalf("CompileExpr(%q): %v", src, err)
	}
	return e
}

func TestExprMatch(t *testing.T) {
	conds := bitConds(t)
	subjects := bitSubjects()
	tests := []struct {
		src  string
		want func(a, b, c bool) bool
	}{
		{"a", func(a, b, c bool) bool { return a }},
		{"not a", func(a, b, c bool) bool { return !a }},
		{"!a", func(a, b, c bool) bool { return !a }},
		{"not not a", func(a, b, c bool) bool { return a }},
		{"!!a", func(a, b, c bool) bool { return a }},
		{"a and b", func(a, b, c bool) bool { return a && b }},
		{"a && b", func(a, b, c bool) bool { return a && b }},
		{"a or b", func(a, b, c bool) bool { return a || b }},
		{"a || b", func(a, b, c bool) bool { return a || b }},
		{"a or b and c", func(a, b, c bool) bool { return a || b && c }},
		{"a and b or c", func(a, b, c bool) bool { return a && b || c }},
		{"a||b&&c", func(a, b, c bool) bool { return a || b && c }},
		{"a && b || c", func(a, b, c bool) bool { return a && b || c }},
		{"(a or b) and c", func(a, b, c bool) bool { return (a || b) && c }},
		{"a and (b or c)", func(a, b, c bool) bool { return a && (b || c) }},
		{"not a and b", func(a, b, c bool) bool { return !a && b }},
		{"not a or b", func(a, b, c bool) bool { return !a || b }},
		{"not (a and b)", func(a, b, c bool) bool { return !(a && b) }},
		{"!(a||b)&&c", func(a, b, c bool) bool { return !(a || b) && c }},
		{"a and not b or not c and a", func(a, b, c bool) bool { return a && !b || !c && a }},
		{"a or b or c", func(a, b, c bool) bool { return a || b || c }},
		{"a and b and c", func(a, b, c bool) bool { return a && b && c }},
		{"((a))", func(a, b, c bool) bool { return a }},
		{"a or a", func(a, b, c bool) bool { return a }},
		{"a and not a", func(a, b, c bool) bool { return false }},
		{"a or not a", func(a, b, c bool) bool { return true }},
		{" \ta\n and\r\nb ", func(a, b, c bool) bool { return a && b }},
		{"(a)and(b)", func(a, b, c bool) bool { return a && b }},
		{"a and !b", func(a, b, c bool) bool { return a && !b }},
		{"not(a)", func(a, b, c bool) bool { return !a }},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			e := mustExpr(t, tc.src, conds)
			if e.String() != tc.src {
				t.Errorf("String() = %q", e.String())
			}
			for k, s := range subjects {
				a, b, c := k&1 != 0, k&2 != 0, k&4 != 0
				if got, want := e.Match(s), tc.want(a, b, c); got != want {
					t.Errorf("a=%v b=%v c=%v: Match = %v, want %v", a, b, c, got, want)
				}
			}
		})
	}
}

func TestExprNil(t *testing.T) {
	var e *Expr
	if !e.Match(&Subject{}) {
		t.Error("a nil Expr did not match")
	}
}

func TestCompileExprErrors(t *testing.T) {
	conds := bitConds(t)
	long := strings.Repeat("a or ", 1000) + "a"
	tests := []struct {
		name  string
		src   string
		value string
		frag  string
	}{
		{"empty", "", "", "is empty: name a condition, or leave when out to match everything"},
		{"blank", " \t\n", "", "is empty"},
		{"unknown", "office", "office", `at column 1: no condition is called "office": define it as an [[acl]] with name = "office"`},
		{"unknown later", "a and vpn", "a and vpn", `at column 7: no condition is called "vpn": define it as an [[acl]] with name = "vpn"`},
		{"unknown case", "A", "A", `no condition is called "A"`},
		{"two names", "a b", "a b", `at column 3: unexpected "b": join conditions with and, or`},
		{"name after paren", "(a) b", "(a) b", `at column 5: unexpected "b"`},
		{"missing operand", "a and", "a and", "at column 6: expected a condition's name, found the end"},
		{"missing operand with space", "a or  ", "a or  ", "at column 7: expected a condition's name, found the end"},
		{"leading and", "and a", "and a", `at column 1: expected a condition's name, found "and"`},
		{"double or", "a or or b", "a or or b", `at column 6: expected a condition's name, found "or"`},
		{"symbol after word", "a and || b", "a and || b", `at column 7: expected a condition's name, found "||"`},
		{"not alone", "not", "not", "at column 4: expected a condition's name, found the end"},
		{"bang alone", "!", "!", "at column 2: expected a condition's name, found the end"},
		{"not at end", "a not", "a not", `at column 3: unexpected "not": join conditions with and, or`},
		{"unclosed", "(a", "(a", `at column 3: expected ")", found end`},
		{"unclosed after or", "(a or b c", "(a or b c", `at column 9: expected ")", found "c"`},
		{"extra close", "a)", "a)", `at column 2: unexpected ")": join conditions with and, or`},
		{"empty parens", "()", "()", `at column 2: expected a condition's name, found ")"`},
		{"close first", ")", ")", `at column 1: expected a condition's name, found ")"`},
		{"single ampersand", "a & b", "a & b", `at column 3: unexpected "&": join conditions with and, or`},
		{"single ampersand first", "& b", "& b", `at column 1: unexpected "&": names are letters, digits, _, - and .; join them with and, or, not and parentheses`},
		{"single bar", "a | b", "a | b", `at column 3: unexpected "|"`},
		{"triple ampersand", "a &&& b", "a &&& b", `at column 5: unexpected "&"`},
		{"bad char", "a and b=1", "a and b=1", `at column 8: unexpected "="`},
		{"unicode", "a && é", "a && é", `at column 6: unexpected "é"`},
		{"bad byte", "a \xff", "a \xff", "at column 3: unexpected \"\\xff\""},
		{"bad first", "#a", "#a", `at column 1: unexpected "#"`},
		{"too long", long, long[:32] + "...", "is longer than 4096 bytes: name a condition for a part of it"},
		{"too deep not", strings.Repeat("not ", 100) + "a", strings.Repeat("not ", 100) + "a", "at column 261: nested deeper than 64: name a condition for a part of it"},
		{"too deep bang", strings.Repeat("!", 65) + "a", strings.Repeat("!", 65) + "a", "at column 66: nested deeper than 64"},
		{"too deep parens", strings.Repeat("(", 100) + "a" + strings.Repeat(")", 100), strings.Repeat("(", 100) + "a" + strings.Repeat(")", 100), "at column 66: nested deeper than 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := CompileExpr(tc.src, conds)
			if err == nil {
				t.Fatalf("CompileExpr = %v, want an error", e)
			}
			se := checkSpec(t, err, "when", -1, tc.value, tc.frag)
			if !strings.Contains(se.Msg, ": ") {
				t.Errorf("message %q does not say what to do", se.Msg)
			}
		})
	}
}

func TestCompileExprLimits(t *testing.T) {
	conds := bitConds(t)
	for _, src := range []string{
		strings.Repeat("not ", 64) + "a",
		strings.Repeat("!", 64) + "a",
		strings.Repeat("(", 64) + "a" + strings.Repeat(")", 64),
		strings.Repeat("(a or ", 32) + "a" + strings.Repeat(")", 32),
		strings.Repeat("a or ", 819) + "a", // 4096 bytes
		strings.Repeat("a||", 1365) + "a",  // 4096 bytes, as deep a tree as fits
	} {
		if len(src) > maxExprLen {
			t.Fatalf("test expression of %d bytes", len(src))
		}
		e := mustExpr(t, src, conds)
		for _, s := range bitSubjects() {
			e.Match(s)
		}
	}
}

func TestExprLevelConds(t *testing.T) {
	conds := map[string]*Cond{
		"office": mustCond(t, CondSpec{Name: "office", Src: []string{"10.0.0.0/8"}}),
		"admin":  mustCond(t, CondSpec{Name: "admin", PathPrefix: []string{"/admin"}}),
		"failed": mustCond(t, CondSpec{Name: "failed", Status: []string{"5xx"}}),
		"busy":   mustCond(t, CondSpec{Name: "busy", Table: "t", Figure: "http_req_rate", Above: 10}),
	}
	tests := []struct {
		src   string
		level Level
		names []string
	}{
		{"office", LevelConnection, []string{"office"}},
		{"not office", LevelConnection, []string{"office"}},
		{"office or busy", LevelConnection, []string{"office", "busy"}},
		{"office and admin", LevelRequest, []string{"office", "admin"}},
		{"not admin or office", LevelRequest, []string{"admin", "office"}},
		{"admin and (failed or office)", LevelResponse, []string{"admin", "failed", "office"}},
		{"failed or failed", LevelResponse, []string{"failed", "failed"}},
		{"office and (admin or office)", LevelRequest, []string{"office", "admin", "office"}},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			e := mustExpr(t, tc.src, conds)
			if e.Level() != tc.level {
				t.Errorf("Level = %v, want %v", e.Level(), tc.level)
			}
			var names []string
			e.Conds(func(c *Cond) { names = append(names, c.Name()) })
			if !slices.Equal(names, tc.names) {
				t.Errorf("Conds visited %q, want %q", names, tc.names)
			}
		})
	}
}
