package config

import (
	"strings"
	"testing"
)

// tricky is valid TOML that a line-by-line reader would get wrong.
const tricky = `# a comment with [[brackets]] and key = "value"
title = """
[[fake]]
key = 1
"""
lit = '''
[fake2]
x = 2'''
quoted = """ends with quotes"""""
"a.b" = 1 # a quoted key with a dot
'c.d'.e = 2
"\u0071k" = 3
x = { y = 1, "z.w" = { q = 2 } }
arr = [
  1, # comment ] with a bracket
  "two ]",
  { n = 3 },
  [ 4,
    5 ],
]
when = 1979-05-27 07:32:00Z
dates = [1979-05-27 07:32:00, 1980-01-01]

[[srv]] # [[not.a.header]]
name = "a"
  [srv.sub]
  k = 1
[[srv]]
name = "b"
  [[srv.inner]]
  v = """
v = 99
"""
  [[srv.inner]]
  v = 2
[ tbl . "x.y" ]
str = "has \" quote, # hash and [[x]]"
after = true
`

func TestIndex(t *testing.T) {
	idx := buildIndex(tricky)
	for _, tc := range []struct {
		path string // dotted; use / inside a quoted part
		want int
	}{
		{"title", 2},
		{"lit", 6},
		{"quoted", 9},
		{"a/b", 10},
		{"c/d", 11},
		{"c/d.e", 11},
		{"qk", 12},
		{"x", 13},
		{"x.y", 13},
		{"x.z/w.q", 13},
		{"arr", 14},
		{"arr.0", 15},
		{"arr.1", 16},
		{"arr.2", 17},
		{"arr.2.n", 17},
		{"arr.3", 18},
		{"arr.3.1", 19},
		{"when", 21},
		{"dates.1", 22},
		{"srv", 24},
		{"srv.0", 24},
		{"srv.0.name", 25},
		{"srv.0.sub", 26},
		{"srv.0.sub.k", 27},
		{"srv.1", 28},
		{"srv.1.name", 29},
		{"srv.1.inner.0", 30},
		{"srv.1.inner.0.v", 31},
		{"srv.1.inner.1", 34},
		{"srv.1.inner.1.v", 35},
		{"tbl", 36},
		{"tbl.x/y", 36},
		{"tbl.x/y.str", 37},
		{"tbl.x/y.after", 38},
		// Longest known prefix.
		{"srv.1.inner.1.v.nope", 35},
		{"srv.1.nope", 28},
		{"nope", 0},
	} {
		t.Run(tc.path, func(t *testing.T) {
			var path []string
			for p := range strings.SplitSeq(tc.path, ".") {
				path = append(path, strings.ReplaceAll(p, "/", "."))
			}
			if got := idx.line(path...); got != tc.want {
				t.Errorf("line(%q) = %d, want %d", path, got, tc.want)
			}
		})
	}
	// Nothing inside the multi-line strings is a key.
	for _, fake := range []string{"fake", "fake2", "key"} {
		if l, ok := idx.lines[fake]; ok {
			t.Errorf("%q recorded at line %d, but it is inside a string", fake, l)
		}
	}
	if l := idx.line("srv", "1", "inner", "0", "v"); l != 31 {
		t.Errorf("v = 99 inside a string moved v to line %d", l)
	}
}

// TestIndexMatchesDecode checks that the index knows every key toml.Decode
// finds in the tricky document and the test fixtures.
func TestIndexMatchesDecode(t *testing.T) {
	checkIndexComplete(t, tricky)
	for _, name := range fixtureNames(t) {
		if name != "syntax.toml" {
			checkIndexComplete(t, string(readFixture(t, name)))
		}
	}
}

func TestIndexNested(t *testing.T) {
	src := `[[a]]
x = 1
[[a.b]]
y = 1
[a.b.c]
z = 1
[[a.b]]
y = 2
[[a]]
[[a.b]]
y = 3
[a.d]
w = 1
`
	idx := buildIndex(src)
	for _, tc := range []struct {
		path []string
		want int
	}{
		{[]string{"a", "0", "x"}, 2},
		{[]string{"a", "0", "b", "0"}, 3},
		{[]string{"a", "0", "b", "0", "c", "z"}, 6},
		{[]string{"a", "0", "b", "1", "y"}, 8},
		{[]string{"a", "1"}, 9},
		{[]string{"a", "1", "b", "0", "y"}, 11},
		{[]string{"a", "1", "d", "w"}, 13},
	} {
		if got := idx.line(tc.path...); got != tc.want {
			t.Errorf("line(%q) = %d, want %d", tc.path, got, tc.want)
		}
	}
}

// TestIndexDeep checks that paths longer than the index records still have
// their prefixes recorded, resolved through arrays of tables.
func TestIndexDeep(t *testing.T) {
	deep := strings.Repeat("a.", maxDepth+5) + "z"
	src := "[[x]]\n[[x]]\n[x." + deep + "]\nk = 1\n" + deep + " = 2\n"
	checkIndexComplete(t, src)
	idx := buildIndex(src)
	if got := idx.line("x", "1", "a", "a"); got != 3 {
		t.Errorf("x.1.a.a: line %d, want 3", got)
	}
	if l, ok := idx.lines[pathKey([]string{"x", "0", "a"})]; ok {
		t.Errorf("x.0.a recorded at line %d, but it belongs to x.1", l)
	}
}

func TestIndexCRLF(t *testing.T) {
	src := strings.ReplaceAll(tricky, "\n", "\r\n")
	if got := buildIndex(src).line("tbl", "x.y", "after"); got != 38 {
		t.Errorf("after: line %d, want 38", got)
	}
	checkIndexComplete(t, src)
}

// TestIndexGarbage feeds the scanner input that is not TOML: it must stop
// and not panic.
func TestIndexGarbage(t *testing.T) {
	for _, src := range []string{
		"", "[", "[[", "[[a", "a", "a =", "a = [", "a = {", `a = "`, `a = """`, `a = '''`,
		`a = "\`, `a = "\u12`, "\"", "'", "[\"a", "[a.]", "a..b = 1", "{", "}", "]", "=",
		"a = [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
		"a = {b = {c = {d = {e = {f = {g = {h = {i = {j = {k = {l = {m = {n = {o = {p = {q = {r = {s = {t = {u = {v = {w = {x = {y = {z = {aa = {bb = {cc = {dd = {ee = {ff = {gg = {hh = 1",
		"\xef\xbb\xbfa = 1", "\x00\x00", "a = 2024-01-01 ", "a = 2024-01-01 1",
	} {
		buildIndex(src)
	}
}
