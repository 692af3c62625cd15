package rules

import (
	"bytes"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Action is what a traffic rule does when its condition matches.
type Action uint8

// Actions. Allow, Deny, Redirect, Return and Tarpit end the evaluation of
// the rules of their phase; UseBackend picks the backend (the first one
// that matches wins) and evaluation goes on.
const (
	Allow Action = iota + 1
	Deny
	Redirect
	Return
	Tarpit
	UseBackend
)

// actionNames are the actions as configured, by Action.
var actionNames = [...]string{Allow: "allow", Deny: "deny", Redirect: "redirect", Return: "return", Tarpit: "tarpit", UseBackend: "use_backend"}

func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// Final reports whether the action ends the evaluation of its phase's
// rules.
func (a Action) Final() bool { return a != UseBackend }

// Phases: when a rule is evaluated.
const (
	OnConnection = "connection"
	OnRequestP   = "request"
	OnResponseP  = "response"
)

// actionsByPhase lists the actions each phase allows.
var actionsByPhase = map[Level][]Action{
	LevelConnection: {Allow, Deny, Tarpit, UseBackend},
	LevelRequest:    {Allow, Deny, Redirect, Return, Tarpit, UseBackend},
	LevelResponse:   {Allow, Deny},
}

// RuleSpec is one traffic rule as configured.
type RuleSpec struct {
	// On is "connection", "request" (the default) or "response".
	On string
	// When is an Expr over the named conditions; empty matches always.
	When string
	// Action is allow, deny, redirect, return, tarpit or use_backend.
	Action string
	// Status is the status of deny (default 403; 502 on a response),
	// redirect (default 302), return (default 200) and tarpit (default
	// 500).
	Status int
	// Location, Scheme and Prefix say where redirect sends the client:
	// Location is the whole target (a Template); Scheme keeps the
	// request's host and target and changes the scheme ("https"); Prefix
	// is put in front of the request's target. Exactly one is set.
	Location, Scheme, Prefix string
	// Body and ContentType make the body of deny, return and tarpit
	// responses; ContentType defaults to text/plain.
	Body, ContentType string
	// Headers are "Name: value" fields added to the responses lb makes.
	Headers []string
	// Delay is how long tarpit holds the client before answering (HTTP)
	// or closing (connection).
	Delay time.Duration
	// Backend is the backend of use_backend, which the caller resolves:
	// BackendTarget is its index, BackendOK false when it is unknown (the
	// caller reported it).
	Backend       string
	BackendTarget int
}

// Rule is a compiled RuleSpec. It is safe for concurrent use.
type Rule struct {
	Phase  Level
	Action Action
	// When is the rule's condition; nil matches always.
	When *Expr
	// Status of the response lb makes, and its reason phrase.
	Status int
	Reason []byte
	// Location is the redirect's target, when set by location.
	Location *Template
	// Scheme and Prefix are the redirect's, when set.
	Scheme, Prefix string
	// Body is the response body, with its type.
	Body        []byte
	ContentType string
	// Headers are the fields added to the responses lb makes.
	Headers [][2]string
	// Delay is tarpit's.
	Delay time.Duration
	// Target is use_backend's backend, as the caller numbered them.
	Target int
}

// DefaultTarpit is how long tarpit holds a client when the rule sets no
// delay.
const DefaultTarpit = 5 * time.Second

// redirectStatuses are the statuses a redirect may have.
var redirectStatuses = []int{301, 302, 303, 307, 308}

// CompileRule checks a rule and compiles it with conds, the named
// conditions its When may use. Its errors are *SpecError.
func CompileRule(s RuleSpec, conds map[string]*Cond) (*Rule, error) {
	r := &Rule{Target: s.BackendTarget, Delay: s.Delay}
	switch s.On {
	case "", OnRequestP:
		r.Phase = LevelRequest
	case OnConnection:
		r.Phase = LevelConnection
	case OnResponseP:
		r.Phase = LevelResponse
	default:
		return nil, &SpecError{Key: "on", Index: -1, Value: s.On, Msg: `is not a phase: write "connection", "request" or "response"`}
	}
	for a, name := range actionNames {
		if name != "" && name == s.Action {
			r.Action = Action(a)
		}
	}
	switch {
	case s.Action == "":
		return nil, &SpecError{Key: "action", Index: -1, Msg: "is required: write " + listActions(actionsByPhase[r.Phase])}
	case r.Action == 0:
		return nil, &SpecError{Key: "action", Index: -1, Value: s.Action, Msg: "is not an action: write " + listActions(actionsByPhase[r.Phase])}
	case !slices.Contains(actionsByPhase[r.Phase], r.Action):
		return nil, specErr("action", -1, s.Action, "cannot run on a %s: a %s rule may %s", r.Phase, r.Phase, listActions(actionsByPhase[r.Phase]))
	}
	if s.When != "" {
		e, err := CompileExpr(s.When, conds)
		if err != nil {
			return nil, err
		}
		if e.Level() > r.Phase {
			var late *Cond
			e.Conds(func(c *Cond) {
				if c.Level() > r.Phase && late == nil {
					late = c
				}
			})
			return nil, specErr("when", -1, s.When, "condition %q needs a %s, which a %s rule does not have yet: use it in a rule with on = %q", late.Name(), late.Level(), r.Phase, late.Level().String())
		}
		r.When = e
	}
	if err := r.compileResponse(s); err != nil {
		return nil, err
	}
	return r, nil
}

// listActions lists actions for a message: "allow, deny or tarpit".
func listActions(as []Action) string {
	names := make([]string, len(as))
	for i, a := range as {
		names[i] = a.String()
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// compileResponse checks the keys that only some actions take, and sets
// what the action needs.
func (r *Rule) compileResponse(s RuleSpec) error {
	unused := func(key string, set bool) error {
		if set {
			return specErr(key, -1, "", "does nothing with action = %q: remove it", r.Action)
		}
		return nil
	}
	inHTTP := r.Phase != LevelConnection
	for _, k := range []struct {
		key  string
		set  bool
		used bool
	}{
		{"status", s.Status != 0, inHTTP && (r.Action == Deny || r.Action == Redirect || r.Action == Return || r.Action == Tarpit)},
		{"location", s.Location != "", r.Action == Redirect},
		{"scheme", s.Scheme != "", r.Action == Redirect},
		{"prefix", s.Prefix != "", r.Action == Redirect},
		{"body", s.Body != "", inHTTP && (r.Action == Deny || r.Action == Return || r.Action == Tarpit)},
		{"content_type", s.ContentType != "", inHTTP && (r.Action == Deny || r.Action == Return || r.Action == Tarpit)},
		{"headers", len(s.Headers) > 0, inHTTP && r.Action != Allow && r.Action != UseBackend},
		{"delay", s.Delay != 0, r.Action == Tarpit},
		{"backend", s.Backend != "", r.Action == UseBackend},
	} {
		if !k.used {
			if err := unused(k.key, k.set); err != nil {
				return err
			}
		}
	}
	switch r.Action {
	case Deny:
		r.Status = cmpOr(s.Status, 403)
		if r.Phase == LevelResponse {
			r.Status = cmpOr(s.Status, 502)
		}
	case Return:
		r.Status = cmpOr(s.Status, 200)
	case Tarpit:
		r.Status = cmpOr(s.Status, 500)
		r.Delay = cmpOr(s.Delay, DefaultTarpit)
		if s.Delay < 0 {
			return specErr("delay", -1, s.Delay.String(), "is negative: write how long to hold the client, like \"5s\"")
		}
	case Redirect:
		r.Status = cmpOr(s.Status, 302)
		if !slices.Contains(redirectStatuses, r.Status) {
			return specErr("status", -1, strconv.Itoa(s.Status), "is not a redirect status: write 301, 302, 303, 307 or 308")
		}
		n := 0
		for _, v := range []string{s.Location, s.Scheme, s.Prefix} {
			if v != "" {
				n++
			}
		}
		if n != 1 {
			return &SpecError{Index: -1, Msg: `a redirect needs exactly one of location (the whole target), scheme (like "https") or prefix (put before the request's target)`}
		}
		switch {
		case s.Location != "":
			t, err := CompileTemplate(s.Location)
			if err != nil {
				var se *SpecError
				if asSpec(err, &se) {
					return specErr("location", -1, s.Location, "%s", se.Msg)
				}
				return err
			}
			r.Location = t
		case s.Scheme != "":
			if s.Scheme != "https" && s.Scheme != "http" {
				return specErr("scheme", -1, s.Scheme, `is not a scheme lb redirects to: write "https" or "http"`)
			}
			r.Scheme = s.Scheme
		default:
			if msg := redirectPrefixProblem(s.Prefix); msg != "" {
				return specErr("prefix", -1, s.Prefix, "%s", msg)
			}
			r.Prefix = strings.TrimSuffix(s.Prefix, "/")
		}
	case UseBackend:
		if s.Backend == "" {
			return &SpecError{Key: "backend", Index: -1, Msg: "is required with action = \"use_backend\": name the backend"}
		}
	}
	if r.Phase == LevelConnection {
		r.Status = 0 // a connection is closed, not answered
	}
	if r.Status != 0 && (r.Status < 200 || r.Status > 599) {
		return specErr("status", -1, strconv.Itoa(r.Status), "is not a final status: write a code from 200 to 599")
	}
	if (r.Status == 204 || r.Status == 304) && (s.Body != "" || r.Action == Deny || r.Action == Tarpit) {
		return specErr("status", -1, strconv.Itoa(r.Status), "is a status without a body: write another, or use action = \"return\" without body")
	}
	if firstCTL(s.ContentType) >= 0 {
		return specErr("content_type", -1, s.ContentType, "has a control character: remove it")
	}
	if r.Status != 0 {
		r.Reason = []byte(http.StatusText(r.Status))
	}
	r.Body = []byte(s.Body)
	if s.Body == "" && inHTTP && (r.Action == Deny || r.Action == Tarpit) {
		r.Body = []byte("lb: " + strings.ToLower(http.StatusText(r.Status)) + "\n")
	}
	if len(r.Body) > 0 {
		r.ContentType = cmpOr(s.ContentType, "text/plain; charset=utf-8")
	}
	for i, h := range s.Headers {
		c, msg := compileHeaderCond(h)
		switch {
		case msg != "":
			return &SpecError{Key: "headers", Index: i, Value: h, Msg: msg}
		case c.present:
			return &SpecError{Key: "headers", Index: i, Value: h, Msg: `has no ":": write "Name: value"`}
		case isFraming(c.name):
			return &SpecError{Key: "headers", Index: i, Value: h, Msg: "is set by lb on the responses it makes: remove it"}
		}
		r.Headers = append(r.Headers, [2]string{c.name, c.value})
	}
	return nil
}

// isFraming reports whether a field frames a message, which lb sets.
func isFraming(name string) bool {
	for _, n := range []string{"Content-Length", "Transfer-Encoding", "Connection", "Content-Type", "Location",
		"Keep-Alive", "Trailer", "Upgrade", "TE", "Proxy-Connection"} {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// redirectPrefixProblem says what is wrong with a redirect prefix.
func redirectPrefixProblem(p string) string {
	if firstCTL(p) >= 0 {
		return "has a control character: remove it"
	}
	if strings.HasPrefix(p, "/") {
		return ""
	}
	scheme, rest, ok := strings.Cut(p, "://")
	if !ok || (scheme != "http" && scheme != "https") || rest == "" || strings.ContainsAny(rest, "?# \t") {
		return `is neither a path nor a URL: write one like "https://www.example.com" or "/new"`
	}
	return ""
}

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Verdict is what a phase's rules decided: the final rule that matched
// (nil: none did; the traffic goes on), and the backend the first matching
// use_backend rule named (-1: none).
type Verdict struct {
	Rule   *Rule
	Target int
}

// Evaluate runs the rules of one phase in order for s.
func Evaluate(rs []*Rule, s *Subject) Verdict {
	v := Verdict{Target: -1}
	for _, r := range rs {
		if !r.When.Match(s) {
			continue
		}
		if r.Action == UseBackend {
			if v.Target < 0 {
				v.Target = r.Target
			}
			continue
		}
		v.Rule = r
		return v
	}
	return v
}

// AppendLocation appends the redirect's target for a request to host
// (as sent, port included or not) and target (as sent), over scheme.
func (r *Rule) AppendLocation(dst []byte, env *Env, host, target []byte) []byte {
	switch {
	case r.Location != nil:
		return r.Location.Append(dst, env)
	case r.Scheme != "":
		// The host without its port: the other scheme has its own.
		name := host
		if len(host) > 0 && host[0] == '[' {
			if i := bytes.IndexByte(host, ']'); i >= 0 {
				name = host[:i+1]
			}
		} else if i := bytes.IndexByte(host, ':'); i >= 0 {
			name = host[:i]
		}
		dst = append(dst, r.Scheme...)
		dst = append(dst, "://"...)
		dst = append(dst, name...)
		return append(dst, originForm(target)...)
	default:
		dst = append(dst, r.Prefix...)
		return append(dst, originForm(target)...)
	}
}

// originForm returns the path and query of a request target: an
// absolute-form target ("http://host/path?q") loses its scheme and
// authority.
func originForm(target []byte) []byte {
	if len(target) == 0 || target[0] == '/' {
		return target
	}
	if i := bytes.Index(target, []byte("://")); i >= 0 {
		rest := target[i+3:]
		if j := bytes.IndexAny(rest, "/?"); j >= 0 {
			return rest[j:]
		}
		return nil
	}
	return target
}

// asSpec is errors.As for *SpecError.
func asSpec(err error, se **SpecError) bool {
	e, ok := err.(*SpecError)
	if ok {
		*se = e
	}
	return ok
}

// String describes the rule for logs: "deny 429 when too_fast".
func (r *Rule) String() string {
	s := r.Action.String()
	if r.Status != 0 {
		s += " " + strconv.Itoa(r.Status)
	}
	if r.When != nil {
		s += " when " + r.When.String()
	}
	return s
}
