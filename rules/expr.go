package rules

import (
	"fmt"
	"strings"
)

// Expr is a compiled "when" expression: named conditions combined with and,
// or, not and parentheses, as in
//
//	admin_path and not (office or vpn)
//
// "and" binds tighter than "or"; "&&", "||" and "!" may be written for
// them. It is safe for concurrent use.
type Expr struct {
	src   string
	nodes []node // nodes[0] is the root
	level Level
}

// node is one operation of an Expr: a condition, or not/and/or of other
// nodes, by index.
type node struct {
	op   exprOp
	cond *Cond
	a, b int
}

type exprOp uint8

const (
	opCond exprOp = iota
	opNot
	opAnd
	opOr
)

// maxExprLen bounds an expression's length, and so its nesting.
const maxExprLen = 4096

// CompileExpr parses an expression over the conditions of conds, by
// name. Its errors are *SpecError with Key "when" that say where the
// problem is.
func CompileExpr(src string, conds map[string]*Cond) (*Expr, error) {
	if len(src) > maxExprLen {
		return nil, specErr("when", -1, clip(src, 32), "is longer than %d bytes: name a condition for a part of it", maxExprLen)
	}
	p := &exprParser{src: src, conds: conds, e: &Expr{src: src}}
	p.e.nodes = append(p.e.nodes, node{}) // the root's place
	p.next()
	if p.tok.kind == tokEnd {
		return nil, &SpecError{Key: "when", Index: -1, Msg: "is empty: name a condition, or leave when out to match everything"}
	}
	root, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEnd {
		return nil, p.errorf("unexpected %s: join conditions with and, or", p.tok.describe())
	}
	p.e.nodes[0] = p.e.nodes[root]
	return p.e, nil
}

// String returns the expression as configured.
func (e *Expr) String() string { return e.src }

// Level returns when the expression can be decided: the latest level of its
// conditions.
func (e *Expr) Level() Level { return e.level }

// Conds calls fn for each condition the expression names.
func (e *Expr) Conds(fn func(*Cond)) {
	for i := range e.nodes[1:] {
		if n := &e.nodes[i+1]; n.op == opCond {
			fn(n.cond)
		}
	}
}

// UsesSNI reports whether a condition of the expression reads the TLS
// server name.
func (e *Expr) UsesSNI() bool {
	uses := false
	if e != nil {
		e.Conds(func(c *Cond) { uses = uses || c.UsesSNI() })
	}
	return uses
}

// Match evaluates the expression for s; a nil Expr matches everything.
func (e *Expr) Match(s *Subject) bool {
	if e == nil {
		return true
	}
	return e.eval(0, s)
}

func (e *Expr) eval(i int, s *Subject) bool {
	n := &e.nodes[i]
	switch n.op {
	case opCond:
		return n.cond.Match(s)
	case opNot:
		return !e.eval(n.a, s)
	case opAnd:
		return e.eval(n.a, s) && e.eval(n.b, s)
	default:
		return e.eval(n.a, s) || e.eval(n.b, s)
	}
}

type tokKind uint8

const (
	tokEnd tokKind = iota
	tokName
	tokAnd
	tokOr
	tokNot
	tokOpen
	tokClose
	tokBad
)

type token struct {
	kind tokKind
	text string
	pos  int
}

func (t token) describe() string {
	switch t.kind {
	case tokEnd:
		return "end"
	case tokOpen:
		return `"("`
	case tokClose:
		return `")"`
	}
	return fmt.Sprintf("%q", t.text)
}

type exprParser struct {
	src   string
	i     int
	tok   token
	conds map[string]*Cond
	e     *Expr
}

func (p *exprParser) errorf(format string, args ...any) error {
	return specErr("when", -1, p.src, "at column %d: "+format, append([]any{p.tok.pos + 1}, args...)...)
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// next reads the next token.
func (p *exprParser) next() {
	for p.i < len(p.src) && (p.src[p.i] == ' ' || p.src[p.i] == '\t' || p.src[p.i] == '\n' || p.src[p.i] == '\r') {
		p.i++
	}
	start := p.i
	if p.i >= len(p.src) {
		p.tok = token{kind: tokEnd, pos: start}
		return
	}
	c := p.src[p.i]
	switch {
	case c == '(':
		p.i++
		p.tok = token{kind: tokOpen, text: "(", pos: start}
	case c == ')':
		p.i++
		p.tok = token{kind: tokClose, text: ")", pos: start}
	case c == '!':
		p.i++
		p.tok = token{kind: tokNot, text: "!", pos: start}
	case strings.HasPrefix(p.src[p.i:], "&&"):
		p.i += 2
		p.tok = token{kind: tokAnd, text: "&&", pos: start}
	case strings.HasPrefix(p.src[p.i:], "||"):
		p.i += 2
		p.tok = token{kind: tokOr, text: "||", pos: start}
	case isNameByte(c):
		for p.i < len(p.src) && isNameByte(p.src[p.i]) {
			p.i++
		}
		text := p.src[start:p.i]
		kind := tokName
		switch text {
		case "and":
			kind = tokAnd
		case "or":
			kind = tokOr
		case "not":
			kind = tokNot
		}
		p.tok = token{kind: kind, text: text, pos: start}
	default:
		p.i++
		for p.i < len(p.src) && p.src[p.i]&0xc0 == 0x80 {
			p.i++ // the rest of a UTF-8 sequence
		}
		p.tok = token{kind: tokBad, text: p.src[start:p.i], pos: start}
	}
}

func (p *exprParser) add(n node) int {
	p.e.nodes = append(p.e.nodes, n)
	return len(p.e.nodes) - 1
}

// or parses a or b or ...; depth bounds the nesting.
func (p *exprParser) or(depth int) (int, error) {
	a, err := p.and(depth)
	if err != nil {
		return 0, err
	}
	for p.tok.kind == tokOr {
		p.next()
		b, err := p.and(depth)
		if err != nil {
			return 0, err
		}
		a = p.add(node{op: opOr, a: a, b: b})
	}
	return a, nil
}

func (p *exprParser) and(depth int) (int, error) {
	a, err := p.unary(depth)
	if err != nil {
		return 0, err
	}
	for p.tok.kind == tokAnd {
		p.next()
		b, err := p.unary(depth)
		if err != nil {
			return 0, err
		}
		a = p.add(node{op: opAnd, a: a, b: b})
	}
	return a, nil
}

// maxDepth bounds the nesting of not and parentheses.
const maxExprDepth = 64

func (p *exprParser) unary(depth int) (int, error) {
	if depth > maxExprDepth {
		return 0, p.errorf("nested deeper than %d: name a condition for a part of it", maxExprDepth)
	}
	switch t := p.tok; t.kind {
	case tokNot:
		p.next()
		a, err := p.unary(depth + 1)
		if err != nil {
			return 0, err
		}
		return p.add(node{op: opNot, a: a}), nil
	case tokOpen:
		p.next()
		a, err := p.or(depth + 1)
		if err != nil {
			return 0, err
		}
		if p.tok.kind != tokClose {
			return 0, p.errorf("expected \")\", found %s", p.tok.describe())
		}
		p.next()
		return a, nil
	case tokName:
		c, ok := p.conds[t.text]
		if !ok {
			return 0, p.errorf("no condition is called %q: define it as an [[acl]] with name = %q", t.text, t.text)
		}
		p.e.level = max(p.e.level, c.level)
		p.next()
		return p.add(node{op: opCond, cond: c}), nil
	case tokEnd:
		return 0, p.errorf("expected a condition's name, found the end")
	case tokBad:
		return 0, p.errorf("unexpected %s: names are letters, digits, _, - and .; join them with and, or, not and parentheses", t.describe())
	default:
		return 0, p.errorf("expected a condition's name, found %s", t.describe())
	}
}
