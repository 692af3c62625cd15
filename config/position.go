package config

import (
	"strconv"
	"strings"
)

// posIndex records the line on which each key of one TOML document is
// defined.
//
// BurntSushi/toml keeps positions per dotted key name, so all the
// [[backend.server]] tables of a file share one entry. The index keys by the
// full path instead, array indices included: "backend", "0", "server", "1",
// "weight". An element of an array of tables is at the line of its [[...]]
// header, or of its "{" when it is an inline table.
//
// It is built by a small scanner over the source text. The scanner is meant
// for documents toml.Decode accepted; on anything else it records what it can,
// and it never panics.
type posIndex struct {
	lines map[string]int
}

// maxDepth bounds the paths the index records and the nesting of arrays and
// inline tables the scanner descends into, so that pathological input costs
// little. lb's schema is a few levels deep.
const maxDepth = 32

// pathKey joins a path into a map key. NUL cannot appear in a bare key and
// hardly in a quoted one.
func pathKey(path []string) string { return strings.Join(path, "\x00") }

// line returns the line of path, or of the longest prefix of it the index
// knows; 0 when it knows none.
func (x *posIndex) line(path ...string) int {
	if x == nil {
		return 0
	}
	for n := min(len(path), maxDepth); n > 0; n-- {
		if l, ok := x.lines[pathKey(path[:n])]; ok {
			return l
		}
	}
	return 0
}

// buildIndex scans a TOML document and returns the position of its keys.
func buildIndex(src string) *posIndex {
	s := &scanner{
		src:    stripBOM(src),
		line:   1,
		idx:    &posIndex{lines: map[string]int{}},
		arrays: map[string]int{},
	}
	s.document()
	return s.idx
}

// stripBOM removes a byte order mark as toml.Decode does.
func stripBOM(src string) string {
	for _, bom := range []string{"\xff\xfe", "\xfe\xff", "\xef\xbb\xbf"} {
		if strings.HasPrefix(src, bom) {
			return src[len(bom):]
		}
	}
	return src
}

// scanner walks a TOML document byte by byte, counting lines. Every loop in
// it consumes at least one byte per round or stops, and every index is
// checked, so it terminates and never panics whatever the input.
type scanner struct {
	src  string
	i    int // next byte; never more than len(src)
	line int // line of src[i]

	idx *posIndex
	// arrays counts the elements of each array of tables ([[a.b]]) by its
	// resolved path, so that a header can name the latest element.
	arrays map[string]int
	// table is the resolved path of the table that key/value pairs
	// currently go to.
	table []string
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }

// peek returns the next byte, or 0 at the end.
func (s *scanner) peek() byte { return s.peekAt(0) }

// peekAt returns the byte n after the next, or 0 past the end.
func (s *scanner) peekAt(n int) byte {
	if j := s.i + n; j >= 0 && j < len(s.src) {
		return s.src[j]
	}
	return 0
}

func (s *scanner) hasPrefix(p string) bool { return strings.HasPrefix(s.src[s.i:], p) }

// next consumes one byte, counting lines.
func (s *scanner) next() {
	if s.eof() {
		return
	}
	if s.src[s.i] == '\n' {
		s.line++
	}
	s.i++
}

// skipSpaces skips spaces and tabs.
func (s *scanner) skipSpaces() {
	for c := s.peek(); c == ' ' || c == '\t'; c = s.peek() {
		s.i++
	}
}

// skipLine skips to the end of the line, leaving the newline.
func (s *scanner) skipLine() {
	for !s.eof() && s.src[s.i] != '\n' {
		s.i++
	}
}

// skipBlank skips white space, newlines and comments, as found between the
// elements of an array or an inline table.
func (s *scanner) skipBlank() {
	for !s.eof() {
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.next()
		case '#':
			s.skipLine()
		default:
			return
		}
	}
}

// set records the line of path, and of every prefix of it not yet known
// (the tables a header or a dotted key creates implicitly). Of a path longer
// than maxDepth, only the prefixes are recorded.
func (s *scanner) set(path []string, line int) {
	for n := 1; n < len(path) && n <= maxDepth; n++ {
		k := pathKey(path[:n])
		if _, ok := s.idx.lines[k]; !ok {
			s.idx.lines[k] = line
		}
	}
	if len(path) > 0 && len(path) <= maxDepth {
		s.idx.lines[pathKey(path)] = line
	}
}

// document scans the whole source.
func (s *scanner) document() {
	for !s.eof() {
		start := s.i
		switch s.peek() {
		case ' ', '\t', '\r', '\n':
			s.next()
		case '#':
			s.skipLine()
		case '[':
			s.header()
		default:
			s.keyValue(s.table, 0)
			s.skipLine() // a comment after the value
		}
		if s.i == start {
			s.next()
		}
	}
}

// header scans a [table] or [[array.of.tables]] header and makes it the
// current table.
func (s *scanner) header() {
	line := s.line
	s.next() // [
	array := s.peek() == '['
	if array {
		s.next()
	}
	keys, ok := s.key()
	s.skipLine() // the closing brackets and a comment
	if !ok {
		return
	}
	if len(keys) > maxDepth {
		// Too deep to record in full; keep resolve from going quadratic.
		s.table = append(s.resolve(keys[:maxDepth]), keys[maxDepth:]...)
		s.set(s.table, line)
		return
	}
	if !array {
		s.table = s.resolve(keys)
		s.set(s.table, line)
		return
	}
	path := append(s.resolve(keys[:len(keys)-1]), keys[len(keys)-1])
	k := pathKey(path)
	n := s.arrays[k]
	s.arrays[k] = n + 1
	s.table = append(path, strconv.Itoa(n))
	s.set(s.table, line)
}

// resolve turns the keys of a header into a path: a key naming an array of
// tables stands for its latest element.
func (s *scanner) resolve(keys []string) []string {
	path := make([]string, 0, len(keys)+2)
	for _, k := range keys {
		path = append(path, k)
		if n := s.arrays[pathKey(path)]; n > 0 {
			path = append(path, strconv.Itoa(n-1))
		}
	}
	return path
}

// keyValue scans "key = value", the key relative to base.
func (s *scanner) keyValue(base []string, depth int) {
	line := s.line
	keys, ok := s.key()
	if !ok {
		return
	}
	s.skipSpaces()
	if s.peek() != '=' {
		return
	}
	s.next()
	s.skipSpaces()
	path := concat(base, keys...)
	s.set(path, line)
	s.value(path, depth)
}

// key scans a possibly dotted key made of bare and quoted parts. It reports
// false when there is no key part where one is due.
func (s *scanner) key() ([]string, bool) {
	var parts []string
	for {
		s.skipSpaces()
		switch c := s.peek(); {
		case c == '"':
			parts = append(parts, s.basicString())
		case c == '\'':
			parts = append(parts, s.literalString())
		case isBare(c):
			start := s.i
			for isBare(s.peek()) {
				s.i++
			}
			parts = append(parts, s.src[start:s.i])
		default:
			return parts, false
		}
		s.skipSpaces()
		if s.peek() != '.' {
			return parts, true
		}
		s.next()
	}
}

// value scans a value of any kind; path is where it goes, for the keys and
// elements inside arrays and inline tables.
func (s *scanner) value(path []string, depth int) {
	if depth > maxDepth {
		return
	}
	switch c := s.peek(); {
	case s.hasPrefix(`"""`):
		s.multiline(`"""`)
	case s.hasPrefix(`'''`):
		s.multiline(`'''`)
	case c == '"':
		s.basicString()
	case c == '\'':
		s.literalString()
	case c == '[':
		s.array(path, depth+1)
	case c == '{':
		s.inlineTable(path, depth+1)
	default:
		s.scalar()
	}
}

// array scans [v, v, ...], which may span lines and hold comments.
func (s *scanner) array(path []string, depth int) {
	s.next() // [
	n := 0
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		switch s.peek() {
		case ']':
			s.next()
			return
		case ',':
			s.next()
			n++
			continue
		}
		start := s.i
		elem := concat(path, strconv.Itoa(n))
		s.set(elem, s.line)
		s.value(elem, depth)
		if s.i == start {
			s.next()
		}
	}
}

// inlineTable scans {k = v, ...}. TOML 1.1 lets it span lines.
func (s *scanner) inlineTable(path []string, depth int) {
	s.next() // {
	for {
		s.skipBlank()
		if s.eof() {
			return
		}
		switch s.peek() {
		case '}':
			s.next()
			return
		case ',':
			s.next()
			continue
		}
		start := s.i
		s.keyValue(path, depth)
		if s.i == start {
			s.next()
		}
	}
}

// scalar scans a number, boolean or date-time.
func (s *scanner) scalar() {
	start := s.i
	for !s.eof() && !isDelim(s.peek()) {
		s.i++
	}
	// A date-time may separate the date and the time with a space.
	tok := s.src[start:s.i]
	if len(tok) == 10 && tok[4] == '-' && tok[7] == '-' && s.peek() == ' ' && isDigit(s.peekAt(1)) {
		s.i++
		for !s.eof() && !isDelim(s.peek()) {
			s.i++
		}
	}
}

// basicString scans a one-line "..." string and returns its value.
func (s *scanner) basicString() string {
	s.next() // "
	var b strings.Builder
	for !s.eof() {
		switch c := s.peek(); c {
		case '"':
			s.next()
			return b.String()
		case '\n':
			return b.String()
		case '\\':
			s.next()
			s.escape(&b)
		default:
			b.WriteByte(c)
			s.i++
		}
	}
	return b.String()
}

// escape decodes the escape sequence after a backslash.
func (s *scanner) escape(b *strings.Builder) {
	if s.eof() || s.peek() == '\n' {
		return
	}
	c := s.peek()
	s.i++
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case 'x':
		s.hexRune(b, 2)
	case 'u':
		s.hexRune(b, 4)
	case 'U':
		s.hexRune(b, 8)
	default: // \" and \\, and anything toml.Decode would have refused
		b.WriteByte(c)
	}
}

// hexRune decodes n hex digits as a code point.
func (s *scanner) hexRune(b *strings.Builder, n int) {
	if s.i+n > len(s.src) {
		return
	}
	v, err := strconv.ParseUint(s.src[s.i:s.i+n], 16, 32)
	if err != nil {
		return
	}
	s.i += n
	b.WriteRune(rune(v))
}

// literalString scans a one-line '...' string and returns its value.
func (s *scanner) literalString() string {
	s.next() // '
	start := s.i
	for !s.eof() {
		switch s.peek() {
		case '\'':
			v := s.src[start:s.i]
			s.next()
			return v
		case '\n':
			return s.src[start:s.i]
		}
		s.i++
	}
	return s.src[start:]
}

// multiline scans a multi-line string, basic or literal, which may span lines and
// contain anything but its closing quotes.
func (s *scanner) multiline(quotes string) {
	s.i += len(quotes)
	for !s.eof() {
		if quotes[0] == '"' && s.peek() == '\\' {
			s.next()
			s.next() // the escaped byte, perhaps a newline
			continue
		}
		if s.hasPrefix(quotes) {
			// Up to two quotes may come just before the closing ones.
			n := 3
			for n < 5 && s.peekAt(n) == quotes[0] {
				n++
			}
			s.i += n
			return
		}
		s.next()
	}
}

// concat returns a new path: base followed by more.
func concat(base []string, more ...string) []string {
	path := make([]string, 0, len(base)+len(more))
	path = append(path, base...)
	return append(path, more...)
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || isDigit(c) || c == '_' || c == '-'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isDelim(c byte) bool {
	switch c {
	case ' ', '\t', '\r', '\n', ',', ']', '}', '#':
		return true
	}
	return false
}
