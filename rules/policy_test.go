package rules

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"
)

func mustRule(t testing.TB, s RuleSpec, conds map[string]*Cond) *Rule {
	t.Helper()
	r, err := CompileRule(s, conds)
	if err != nil {
		t.Fatalf("CompileRule(%+v): %v", s, err)
	}
	return r
}

// policyConds are conditions of each level for rules' when.
func policyConds(t testing.TB) map[string]*Cond {
	t.Helper()
	return map[string]*Cond{
		"office": mustCond(t, CondSpec{Name: "office", Src: []string{"10.0.0.0/8"}}),
		"admin":  mustCond(t, CondSpec{Name: "admin", PathPrefix: []string{"/admin"}}),
		"failed": mustCond(t, CondSpec{Name: "failed", Status: []string{"5xx"}}),
	}
}

// minimalRule is the smallest spec of an action that compiles where the
// action may run.
func minimalRule(on, action string) RuleSpec {
	s := RuleSpec{On: on, Action: action}
	switch action {
	case "redirect":
		s.Scheme = "https"
	case "use_backend":
		s.Backend, s.BackendTarget = "app", 2
	}
	return s
}

func TestCompileRulePhases(t *testing.T) {
	all := []string{"allow", "deny", "redirect", "return", "tarpit", "use_backend"}
	allowed := map[string][]string{
		"connection": {"allow", "deny", "tarpit", "use_backend"},
		"request":    {"allow", "deny", "redirect", "return", "tarpit", "use_backend"},
		"":           {"allow", "deny", "redirect", "return", "tarpit", "use_backend"},
		"response":   {"allow", "deny"},
	}
	lists := map[string]string{
		"connection": "allow, deny, tarpit or use_backend",
		"request":    "allow, deny, redirect, return, tarpit or use_backend",
		"":           "allow, deny, redirect, return, tarpit or use_backend",
		"response":   "allow or deny",
	}
	phases := map[string]Level{"connection": LevelConnection, "request": LevelRequest, "": LevelRequest, "response": LevelResponse}
	for on, ok := range allowed {
		for _, action := range all {
			t.Run(on+"/"+action, func(t *testing.T) {
				r, err := CompileRule(minimalRule(on, action), nil)
				if !slices.Contains(ok, action) {
					if err == nil {
						t.Fatalf("CompileRule = %v, want an error", r)
					}
					phase := cmpOr(on, "request")
					checkSpec(t, err, "action", -1, action, fmt.Sprintf("cannot run on a %s: a %s rule may %s", phase, phase, lists[on]))
					return
				}
				if err != nil {
					t.Fatalf("CompileRule: %v", err)
				}
				if r.Phase != phases[on] || r.Action.String() != action || r.When != nil {
					t.Errorf("rule %+v", r)
				}
			})
		}
		t.Run(on+"/missing", func(t *testing.T) {
			_, err := CompileRule(RuleSpec{On: on}, nil)
			checkSpec(t, err, "action", -1, "", "is required: write "+lists[on])
		})
		t.Run(on+"/unknown", func(t *testing.T) {
			_, err := CompileRule(RuleSpec{On: on, Action: "reject"}, nil)
			checkSpec(t, err, "action", -1, "reject", "is not an action: write "+lists[on])
		})
		t.Run(on+"/upper case", func(t *testing.T) {
			_, err := CompileRule(RuleSpec{On: on, Action: "Deny"}, nil)
			checkSpec(t, err, "action", -1, "Deny", "is not an action")
		})
	}
	for _, on := range []string{"Request", "tcp", "http-request", " request"} {
		t.Run("on "+on, func(t *testing.T) {
			_, err := CompileRule(RuleSpec{On: on, Action: "deny"}, nil)
			checkSpec(t, err, "on", -1, on, `is not a phase: write "connection", "request" or "response"`)
		})
	}
}

func TestCompileRuleDefaults(t *testing.T) {
	const plain = "text/plain; charset=utf-8"
	tests := []struct {
		name        string
		spec        RuleSpec
		status      int
		body        string
		contentType string
		delay       time.Duration
	}{
		{"allow", RuleSpec{Action: "allow"}, 0, "", "", 0},
		{"deny", RuleSpec{Action: "deny"}, 403, "lb: forbidden\n", plain, 0},
		{"deny 429", RuleSpec{Action: "deny", Status: 429}, 429, "lb: too many requests\n", plain, 0},
		{"deny with body", RuleSpec{Action: "deny", Body: "{}", ContentType: "application/json"}, 403, "{}", "application/json", 0},
		{"deny body type default", RuleSpec{Action: "deny", Body: "no"}, 403, "no", plain, 0},
		{"response deny", RuleSpec{On: "response", Action: "deny"}, 502, "lb: bad gateway\n", plain, 0},
		{"response deny 503", RuleSpec{On: "response", Action: "deny", Status: 503}, 503, "lb: service unavailable\n", plain, 0},
		{"return", RuleSpec{Action: "return"}, 200, "", "", 0},
		{"return body", RuleSpec{Action: "return", Body: "ok\n"}, 200, "ok\n", plain, 0},
		{"return 204", RuleSpec{Action: "return", Status: 204}, 204, "", "", 0},
		{"tarpit", RuleSpec{Action: "tarpit"}, 500, "lb: internal server error\n", plain, DefaultTarpit},
		{"tarpit delay", RuleSpec{Action: "tarpit", Delay: 2 * time.Second, Status: 429}, 429, "lb: too many requests\n", plain, 2 * time.Second},
		{"connection tarpit", RuleSpec{On: "connection", Action: "tarpit"}, 0, "", "", DefaultTarpit},
		{"connection tarpit delay", RuleSpec{On: "connection", Action: "tarpit", Delay: time.Second}, 0, "", "", time.Second},
		{"redirect", RuleSpec{Action: "redirect", Scheme: "https"}, 302, "", "", 0},
		{"redirect 301", RuleSpec{Action: "redirect", Scheme: "https", Status: 301}, 301, "", "", 0},
		{"redirect 308", RuleSpec{Action: "redirect", Prefix: "/v2", Status: 308}, 308, "", "", 0},
		{"use_backend", RuleSpec{Action: "use_backend", Backend: "app"}, 0, "", "", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRule(t, tc.spec, nil)
			if r.Status != tc.status || string(r.Body) != tc.body || r.ContentType != tc.contentType || r.Delay != tc.delay {
				t.Errorf("status %d, body %q, type %q, delay %v; want %d, %q, %q, %v",
					r.Status, r.Body, r.ContentType, r.Delay, tc.status, tc.body, tc.contentType, tc.delay)
			}
		})
	}
	if DefaultTarpit != 5*time.Second {
		t.Errorf("DefaultTarpit = %v", DefaultTarpit)
	}
}

func TestCompileRuleFields(t *testing.T) {
	r := mustRule(t, RuleSpec{Action: "use_backend", Backend: "api", BackendTarget: 3}, nil)
	if r.Target != 3 || r.Action != UseBackend || r.Action.Final() {
		t.Errorf("use_backend rule %+v", r)
	}
	r = mustRule(t, RuleSpec{Action: "deny", Status: 429, Headers: []string{"Retry-After:  30 ", "X-Reason: rate\tlimit", "X-Empty:"}}, nil)
	want := [][2]string{{"Retry-After", "30"}, {"X-Reason", "rate\tlimit"}, {"X-Empty", ""}}
	if !slices.Equal(r.Headers, want) {
		t.Errorf("Headers = %q, want %q", r.Headers, want)
	}
	for _, tc := range []struct {
		spec             RuleSpec
		location         string
		scheme, prefix   string
		status           int
		withoutLocations bool
	}{
		{RuleSpec{Action: "redirect", Location: "https://%[host]/x"}, "https://%[host]/x", "", "", 302, false},
		{RuleSpec{Action: "redirect", Scheme: "http", Status: 307}, "", "http", "", 307, false},
		{RuleSpec{Action: "redirect", Prefix: "/new/"}, "", "", "/new", 302, false},
		{RuleSpec{Action: "redirect", Prefix: "/"}, "", "", "", 302, false},
		{RuleSpec{Action: "redirect", Prefix: "https://www.example.com"}, "", "", "https://www.example.com", 302, false},
		{RuleSpec{Action: "redirect", Prefix: "https://www.example.com/"}, "", "", "https://www.example.com", 302, false},
		{RuleSpec{Action: "redirect", Prefix: "http://www.example.com/base/", Status: 303}, "", "", "http://www.example.com/base", 303, false},
	} {
		r := mustRule(t, tc.spec, nil)
		loc := ""
		if r.Location != nil {
			loc = r.Location.String()
		}
		if loc != tc.location || r.Scheme != tc.scheme || r.Prefix != tc.prefix || r.Status != tc.status {
			t.Errorf("%+v: location %q, scheme %q, prefix %q, status %d", tc.spec, loc, r.Scheme, r.Prefix, r.Status)
		}
	}
}

func TestCompileRuleErrors(t *testing.T) {
	conds := policyConds(t)
	tests := []struct {
		name  string
		spec  RuleSpec
		key   string
		index int
		value string
		frag  string
	}{
		// Keys that the action does not use.
		{"allow status", RuleSpec{Action: "allow", Status: 200}, "status", -1, "", `does nothing with action = "allow": remove it`},
		{"allow body", RuleSpec{Action: "allow", Body: "x"}, "body", -1, "", `does nothing with action = "allow"`},
		{"allow content_type", RuleSpec{Action: "allow", ContentType: "text/html"}, "content_type", -1, "", `does nothing with action = "allow"`},
		{"allow headers", RuleSpec{Action: "allow", Headers: []string{"X-A: 1"}}, "headers", -1, "", `does nothing with action = "allow"`},
		{"allow delay", RuleSpec{Action: "allow", Delay: time.Second}, "delay", -1, "", `does nothing with action = "allow"`},
		{"allow backend", RuleSpec{Action: "allow", Backend: "app"}, "backend", -1, "", `does nothing with action = "allow"`},
		{"deny location", RuleSpec{Action: "deny", Location: "/x"}, "location", -1, "", `does nothing with action = "deny"`},
		{"deny scheme", RuleSpec{Action: "deny", Scheme: "https"}, "scheme", -1, "", `does nothing with action = "deny"`},
		{"deny prefix", RuleSpec{Action: "deny", Prefix: "/x"}, "prefix", -1, "", `does nothing with action = "deny"`},
		{"deny delay", RuleSpec{Action: "deny", Delay: time.Second}, "delay", -1, "", `does nothing with action = "deny"`},
		{"deny backend", RuleSpec{Action: "deny", Backend: "app"}, "backend", -1, "", `does nothing with action = "deny"`},
		{"return delay", RuleSpec{Action: "return", Delay: time.Second}, "delay", -1, "", `does nothing with action = "return"`},
		{"redirect body", RuleSpec{Action: "redirect", Scheme: "https", Body: "x"}, "body", -1, "", `does nothing with action = "redirect"`},
		{"redirect content_type", RuleSpec{Action: "redirect", Scheme: "https", ContentType: "text/html"}, "content_type", -1, "", `does nothing with action = "redirect"`},
		{"use_backend status", RuleSpec{Action: "use_backend", Backend: "app", Status: 503}, "status", -1, "", `does nothing with action = "use_backend"`},
		{"use_backend headers", RuleSpec{Action: "use_backend", Backend: "app", Headers: []string{"X-A: 1"}}, "headers", -1, "", `does nothing with action = "use_backend"`},
		{"connection deny status", RuleSpec{On: "connection", Action: "deny", Status: 403}, "status", -1, "", `does nothing with action = "deny"`},
		{"connection deny body", RuleSpec{On: "connection", Action: "deny", Body: "x"}, "body", -1, "", `does nothing with action = "deny"`},
		{"connection deny headers", RuleSpec{On: "connection", Action: "deny", Headers: []string{"X-A: 1"}}, "headers", -1, "", `does nothing with action = "deny"`},
		{"connection tarpit status", RuleSpec{On: "connection", Action: "tarpit", Status: 500}, "status", -1, "", `does nothing with action = "tarpit"`},
		{"connection tarpit content_type", RuleSpec{On: "connection", Action: "tarpit", ContentType: "text/plain"}, "content_type", -1, "", `does nothing with action = "tarpit"`},
		{"response deny delay", RuleSpec{On: "response", Action: "deny", Delay: time.Second}, "delay", -1, "", `does nothing with action = "deny"`},
		{"response allow status", RuleSpec{On: "response", Action: "allow", Status: 200}, "status", -1, "", `does nothing with action = "allow"`},
		// Redirects.
		{"redirect nowhere", RuleSpec{Action: "redirect"}, "", -1, "", `a redirect needs exactly one of location (the whole target), scheme (like "https") or prefix (put before the request's target)`},
		{"redirect two ways", RuleSpec{Action: "redirect", Scheme: "https", Prefix: "/x"}, "", -1, "", "a redirect needs exactly one of"},
		{"redirect three ways", RuleSpec{Action: "redirect", Location: "/a", Scheme: "https", Prefix: "/x"}, "", -1, "", "a redirect needs exactly one of"},
		{"redirect 200", RuleSpec{Action: "redirect", Scheme: "https", Status: 200}, "status", -1, "200", "is not a redirect status: write 301, 302, 303, 307 or 308"},
		{"redirect 300", RuleSpec{Action: "redirect", Scheme: "https", Status: 300}, "status", -1, "300", "is not a redirect status"},
		{"redirect 304", RuleSpec{Action: "redirect", Scheme: "https", Status: 304}, "status", -1, "304", "is not a redirect status"},
		{"redirect -1", RuleSpec{Action: "redirect", Scheme: "https", Status: -1}, "status", -1, "-1", "is not a redirect status"},
		{"scheme ftp", RuleSpec{Action: "redirect", Scheme: "ftp"}, "scheme", -1, "ftp", `is not a scheme lb redirects to: write "https" or "http"`},
		{"scheme with colon", RuleSpec{Action: "redirect", Scheme: "https://"}, "scheme", -1, "https://", "is not a scheme"},
		{"scheme upper case", RuleSpec{Action: "redirect", Scheme: "HTTPS"}, "scheme", -1, "HTTPS", "is not a scheme"},
		{"prefix host only", RuleSpec{Action: "redirect", Prefix: "www.example.com"}, "prefix", -1, "www.example.com", `is neither a path nor a URL: write one like "https://www.example.com" or "/new"`},
		{"prefix other scheme", RuleSpec{Action: "redirect", Prefix: "ftp://x"}, "prefix", -1, "ftp://x", "is neither a path nor a URL"},
		{"prefix no host", RuleSpec{Action: "redirect", Prefix: "https://"}, "prefix", -1, "https://", "is neither a path nor a URL"},
		{"prefix query", RuleSpec{Action: "redirect", Prefix: "https://a.test/?x"}, "prefix", -1, "https://a.test/?x", "is neither a path nor a URL"},
		{"prefix fragment", RuleSpec{Action: "redirect", Prefix: "https://a.test#x"}, "prefix", -1, "https://a.test#x", "is neither a path nor a URL"},
		{"prefix space", RuleSpec{Action: "redirect", Prefix: "https://a test"}, "prefix", -1, "https://a test", "is neither a path nor a URL"},
		{"prefix url control", RuleSpec{Action: "redirect", Prefix: "https://a.test/\x7f"}, "prefix", -1, "https://a.test/\x7f", "has a control character: remove it"},
		{"prefix path control", RuleSpec{Action: "redirect", Prefix: "/a\r\nSet-Cookie: x=1"}, "prefix", -1, "/a\r\nSet-Cookie: x=1", "has a control character: remove it"},
		{"prefix empty-ish", RuleSpec{Action: "redirect", Prefix: " /a"}, "prefix", -1, " /a", "is neither a path nor a URL"},
		{"location bad variable", RuleSpec{Action: "redirect", Location: "https://%[Host]/"}, "location", -1, "https://%[Host]/", `has unknown variable "%[Host]": write "%[host]"`},
		{"location unknown variable", RuleSpec{Action: "redirect", Location: "https://%[hots]/"}, "location", -1, "https://%[hots]/", `has unknown variable "%[hots]": use one of client_ip`},
		{"location lone percent", RuleSpec{Action: "redirect", Location: "/100%"}, "location", -1, "/100%", `ends with a lone "%"`},
		{"location control", RuleSpec{Action: "redirect", Location: "/a\nb"}, "location", -1, "/a\nb", `contains a line feed (\n)`},
		// Statuses.
		{"deny 100", RuleSpec{Action: "deny", Status: 100}, "status", -1, "100", "is not a final status: write a code from 200 to 599"},
		{"deny 600", RuleSpec{Action: "deny", Status: 600}, "status", -1, "600", "is not a final status"},
		{"deny negative", RuleSpec{Action: "deny", Status: -403}, "status", -1, "-403", "is not a final status"},
		{"return 199", RuleSpec{Action: "return", Status: 199}, "status", -1, "199", "is not a final status"},
		{"tarpit 1000", RuleSpec{Action: "tarpit", Status: 1000}, "status", -1, "1000", "is not a final status"},
		{"response deny 101", RuleSpec{On: "response", Action: "deny", Status: 101}, "status", -1, "101", "is not a final status"},
		// Other keys.
		{"tarpit negative delay", RuleSpec{Action: "tarpit", Delay: -time.Second}, "delay", -1, "-1s", `is negative: write how long to hold the client, like "5s"`},
		{"connection tarpit negative delay", RuleSpec{On: "connection", Action: "tarpit", Delay: -time.Second}, "delay", -1, "-1s", "is negative"},
		{"content_type control", RuleSpec{Action: "return", Body: "x", ContentType: "text/plain\r\nX-A: 1"}, "content_type", -1, "text/plain\r\nX-A: 1", "has a control character: remove it"},
		{"use_backend without backend", RuleSpec{Action: "use_backend"}, "backend", -1, "", `is required with action = "use_backend": name the backend`},
		{"header without colon", RuleSpec{Action: "deny", Headers: []string{"X-A: 1", "Retry-After"}}, "headers", 1, "Retry-After", `has no ":": write "Name: value"`},
		{"header empty", RuleSpec{Action: "deny", Headers: []string{""}}, "headers", 0, "", "is empty"},
		{"header bad name", RuleSpec{Action: "return", Headers: []string{"X A: 1"}}, "headers", 0, "X A: 1", "has a space in its field name"},
		{"header control", RuleSpec{Action: "tarpit", Headers: []string{"X-A: 1\r\nX-B: 2"}}, "headers", 0, "X-A: 1\r\nX-B: 2", "has a carriage return (\\r) in its value"},
		{"header content-length", RuleSpec{Action: "deny", Headers: []string{"Content-Length: 0"}}, "headers", 0, "Content-Length: 0", "is set by lb on the responses it makes: remove it"},
		{"header transfer-encoding", RuleSpec{Action: "deny", Headers: []string{"transfer-encoding: chunked"}}, "headers", 0, "transfer-encoding: chunked", "is set by lb"},
		{"header connection", RuleSpec{Action: "return", Headers: []string{"Connection: close"}}, "headers", 0, "Connection: close", "is set by lb"},
		{"header content-type", RuleSpec{Action: "return", Headers: []string{"CONTENT-TYPE: text/html"}}, "headers", 0, "CONTENT-TYPE: text/html", "is set by lb"},
		{"header location", RuleSpec{Action: "redirect", Scheme: "https", Headers: []string{"Location: /x"}}, "headers", 0, "Location: /x", "is set by lb"},
		// When.
		{"when unknown", RuleSpec{Action: "deny", When: "office and vpn"}, "when", -1, "office and vpn", `at column 12: no condition is called "vpn": define it as an [[acl]]`},
		{"when syntax", RuleSpec{Action: "deny", When: "office and"}, "when", -1, "office and", "expected a condition's name, found the end"},
		{"when request on connection", RuleSpec{On: "connection", Action: "deny", When: "office and admin"}, "when", -1, "office and admin",
			`condition "admin" needs a request, which a connection rule does not have yet: use it in a rule with on = "request"`},
		{"when response on request", RuleSpec{Action: "deny", When: "not office or failed"}, "when", -1, "not office or failed",
			`condition "failed" needs a response, which a request rule does not have yet: use it in a rule with on = "response"`},
		{"when response on connection", RuleSpec{On: "connection", Action: "deny", When: "failed or admin"}, "when", -1, "failed or admin",
			`condition "failed" needs a response, which a connection rule does not have yet: use it in a rule with on = "response"`},
		{"when first late condition", RuleSpec{On: "connection", Action: "allow", When: "office or (admin and failed)"}, "when", -1, "office or (admin and failed)",
			`condition "admin" needs a request`},
		// Order: the action comes first.
		{"action before when", RuleSpec{Action: "nope", When: "vpn"}, "action", -1, "nope", "is not an action"},
		{"when before keys", RuleSpec{Action: "allow", When: "vpn", Status: 200}, "when", -1, "vpn", "no condition is called"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := CompileRule(tc.spec, conds)
			if err == nil {
				t.Fatalf("CompileRule = %+v, want an error", r)
			}
			checkSpec(t, err, tc.key, tc.index, tc.value, tc.frag)
		})
	}
}

func TestCompileRuleWhen(t *testing.T) {
	conds := policyConds(t)
	for _, tc := range []struct {
		on, when string
		level    Level
	}{
		{"connection", "office", LevelConnection},
		{"request", "office", LevelConnection},
		{"request", "office and not admin", LevelRequest},
		{"response", "office", LevelConnection},
		{"response", "admin", LevelRequest},
		{"response", "admin and failed", LevelResponse},
	} {
		r := mustRule(t, RuleSpec{On: tc.on, Action: "allow", When: tc.when}, conds)
		if r.When == nil || r.When.String() != tc.when || r.When.Level() != tc.level {
			t.Errorf("on %s when %q: When = %v", tc.on, tc.when, r.When)
		}
	}
}

func TestRuleString(t *testing.T) {
	conds := map[string]*Cond{"too_fast": mustCond(t, CondSpec{Name: "too_fast", Table: "t", Figure: "http_req_rate", Above: 100})}
	for _, tc := range []struct {
		spec RuleSpec
		want string
	}{
		{RuleSpec{Action: "deny", Status: 429, When: "too_fast"}, "deny 429 when too_fast"},
		{RuleSpec{Action: "allow"}, "allow"},
		{RuleSpec{Action: "use_backend", Backend: "b", When: "not too_fast"}, "use_backend when not too_fast"},
		{RuleSpec{Action: "redirect", Scheme: "https"}, "redirect 302"},
		{RuleSpec{On: "connection", Action: "tarpit", When: "too_fast"}, "tarpit when too_fast"},
	} {
		if got := mustRule(t, tc.spec, conds).String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
	for a, want := range map[Action]string{Allow: "allow", Deny: "deny", Redirect: "redirect", Return: "return", Tarpit: "tarpit", UseBackend: "use_backend", 0: "", 42: "action(42)"} {
		if a.String() != want {
			t.Errorf("Action(%d).String() = %q, want %q", a, a.String(), want)
		}
		if a.Final() != (a != UseBackend) {
			t.Errorf("%v.Final() = %v", a, a.Final())
		}
	}
}

func TestEvaluate(t *testing.T) {
	conds := bitConds(t)
	subjects := bitSubjects()
	rule := func(action, when string, target int) *Rule {
		s := RuleSpec{Action: action, When: when}
		switch action {
		case "use_backend":
			s.Backend, s.BackendTarget = "b", target
		case "redirect":
			s.Scheme = "https"
		}
		return mustRule(t, s, conds)
	}
	denyA, allowB := rule("deny", "a", 0), rule("allow", "b", 0)
	use1, use2, denyC := rule("use_backend", "a", 1), rule("use_backend", "b", 2), rule("deny", "c", 0)
	allowA, deny := rule("allow", "a", 0), rule("deny", "", 0)
	use3, use4, use5 := rule("use_backend", "", 3), rule("use_backend", "", 4), rule("use_backend", "", 5)
	tarpitB, returnC := rule("tarpit", "b", 0), rule("return", "c", 0)
	tests := []struct {
		name   string
		rules  []*Rule
		k      int // the subject's client is 10.0.0.k: a, b, c are its bits
		rule   *Rule
		target int
	}{
		{"no rules", nil, 7, nil, -1},
		{"first final rule wins", []*Rule{denyA, allowB}, 3, denyA, -1},
		{"second final rule", []*Rule{denyA, allowB}, 2, allowB, -1},
		{"nothing matches", []*Rule{denyA, allowB, use2}, 4, nil, -1},
		{"use_backend then final", []*Rule{use1, use2, denyC}, 5, denyC, 1},
		{"first use_backend wins", []*Rule{use1, use2, denyC}, 7, denyC, 1},
		{"second use_backend", []*Rule{use1, use2, denyC}, 6, denyC, 2},
		{"use_backend alone", []*Rule{use1, use2, denyC}, 2, nil, 2},
		{"use_backend without when", []*Rule{use3, use4}, 0, nil, 3},
		{"allow stops", []*Rule{allowA, deny}, 1, allowA, -1},
		{"allow does not match", []*Rule{allowA, deny}, 0, deny, -1},
		{"allow stops before use_backend", []*Rule{allowA, use5}, 1, allowA, -1},
		{"use_backend after no match", []*Rule{allowA, use5}, 0, nil, 5},
		{"tarpit", []*Rule{use1, tarpitB, returnC}, 7, tarpitB, 1},
		{"return", []*Rule{use1, tarpitB, returnC}, 4, returnC, -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := Evaluate(tc.rules, subjects[tc.k])
			if v.Rule != tc.rule || v.Target != tc.target {
				t.Errorf("Evaluate = %v, %d; want %v, %d", v.Rule, v.Target, tc.rule, tc.target)
			}
		})
	}
}

func TestAppendLocation(t *testing.T) {
	env := &Env{Host: []byte("a.test:8443"), Client: netip.MustParseAddrPort("[::ffff:192.0.2.7]:5000"), Scheme: "http"}
	tests := []struct {
		name         string
		spec         RuleSpec
		env          *Env
		host, target string
		want         string
	}{
		{"scheme strips the port", RuleSpec{Scheme: "https"}, nil, "example.com:8080", "/path?q", "https://example.com/path?q"},
		{"scheme without port", RuleSpec{Scheme: "https"}, nil, "example.com", "/path", "https://example.com/path"},
		{"scheme empty port", RuleSpec{Scheme: "https"}, nil, "example.com:", "/", "https://example.com/"},
		{"scheme http", RuleSpec{Scheme: "http"}, nil, "a.test:443", "/", "http://a.test/"},
		{"scheme ipv6 with port", RuleSpec{Scheme: "https"}, nil, "[::1]:80", "/x", "https://[::1]/x"},
		{"scheme ipv6", RuleSpec{Scheme: "https"}, nil, "[2001:db8::1]", "/x", "https://[2001:db8::1]/x"},
		{"scheme ipv4", RuleSpec{Scheme: "https"}, nil, "192.0.2.1:80", "/x", "https://192.0.2.1/x"},
		{"prefix url", RuleSpec{Prefix: "https://new.example.com"}, nil, "old.example.com", "/a?b", "https://new.example.com/a?b"},
		{"prefix url with slash", RuleSpec{Prefix: "https://new.example.com/"}, nil, "x", "/a", "https://new.example.com/a"},
		{"prefix path", RuleSpec{Prefix: "/v2/"}, nil, "x", "/a?b=1", "/v2/a?b=1"},
		{"location", RuleSpec{Location: "https://www.example.com/"}, env, "x", "/a", "https://www.example.com/"},
		{"location template", RuleSpec{Location: "https://%[host]/moved?from=%[client_ip]&s=%[scheme]"}, env, "x", "/a", "https://a.test:8443/moved?from=192.0.2.7&s=http"},
		{"location nil env", RuleSpec{Location: "https://%[host]/moved"}, nil, "x", "/a", "https:///moved"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Action = "redirect"
			r := mustRule(t, tc.spec, nil)
			if got := string(r.AppendLocation(nil, tc.env, []byte(tc.host), []byte(tc.target))); got != tc.want {
				t.Errorf("AppendLocation = %q, want %q", got, tc.want)
			}
			dst := []byte("Location: ")
			if got := string(r.AppendLocation(dst, tc.env, []byte(tc.host), []byte(tc.target))); got != "Location: "+tc.want {
				t.Errorf("AppendLocation to %q = %q", dst, got)
			}
		})
	}
}

// TestPolicyAllocs checks that matching a request against conditions and
// rules does not allocate: it happens on every request.
func TestPolicyAllocs(t *testing.T) {
	e := testEntry(t, "192.0.2.7", 5)
	c := mustCond(t, CondSpec{Name: "c", Src: []string{"10.0.0.0/8", "192.0.2.0/24"}, PathPrefix: []string{"/api"},
		Header: []string{"X-Env: canary"}, Query: []string{"debug=1"}, Cookie: []string{"session"},
		Table: "t", Figure: "http_req_rate", Above: 4})
	other := mustCond(t, CondSpec{Name: "other", Src: []string{"2001:db8::/32"}, Path: []string{"/x"}, SNI: []string{"*.example.com"}})
	conds := map[string]*Cond{"c": c, "other": other}
	s := reqSubject("GET", "api.example.com", "/api/v1?x=&debug=1", "X-Env", "canary", "Cookie", "lang=fr; session=abc")
	s.Tracked[1] = Track{Name: "t", Entry: e}
	s.Now = testNow
	s.SNI = "a-rather-long-server-name.eu-west-1.example.com"
	ex := mustExpr(t, "c and not other or (other and c)", conds)
	rules := []*Rule{
		mustRule(t, RuleSpec{Action: "deny", When: "other"}, conds),
		mustRule(t, RuleSpec{Action: "use_backend", Backend: "b", BackendTarget: 1, When: "c"}, conds),
		mustRule(t, RuleSpec{Action: "deny", Status: 429, When: "c and not other"}, conds),
	}
	if !c.Match(s) || other.Match(s) || !ex.Match(s) {
		t.Fatal("the conditions do not match as they should")
	}
	if v := Evaluate(rules, s); v.Rule != rules[2] || v.Target != 1 {
		t.Fatalf("Evaluate = %+v", v)
	}
	sni := mustCond(t, CondSpec{SNI: []string{"*.example.com"}})
	for name, fn := range map[string]func(){
		"Cond.Match":     func() { c.Match(s) },
		"Cond.Match sni": func() { sni.Match(s) },
		"Expr.Match":     func() { ex.Match(s) },
		"Evaluate":       func() { Evaluate(rules, s) },
	} {
		if allocs := testing.AllocsPerRun(100, fn); allocs != 0 {
			t.Errorf("%s allocates %v times", name, allocs)
		}
	}
}
