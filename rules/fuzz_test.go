package rules

import (
	"errors"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// specKeys are the keys a SpecError may name.
var specKeys = []string{"", "host", "path_prefix", "path_regex", "method", "header", "action", "name", "value", "on"}

// checkFuzzError checks that err is a well-formed *SpecError.
func checkFuzzError(t *testing.T, err error) {
	t.Helper()
	var se *SpecError
	if !errors.As(err, &se) {
		t.Fatalf("error %T %v, want a *SpecError", err, err)
	}
	if !slices.Contains(specKeys, se.Key) || se.Msg == "" || !strings.Contains(se.Msg, ": ") {
		t.Fatalf("malformed error %+v", se)
	}
	if se.Key != "" && se.Value != "" && !strings.HasPrefix(se.Error(), se.Key+" "+strconv.Quote(se.Value)+": ") {
		t.Fatalf("Error() = %q, without the key and value in front", se.Error())
	}
}

// list returns s as a one-element list, or nil when s is empty.
func list(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

// FuzzCompileRoute checks that CompileRoute never panics and returns a
// *SpecError or a route; and that the route never panics on Match, and
// agrees with a plain string implementation of the conditions.
func FuzzCompileRoute(f *testing.F) {
	f.Add("*.example.com", "/api/", `^/api/v[0-9]+/`, "GET", "X-Env: canary", "GET", "a.EXAMPLE.com:8080", "/api/v1/x?y", "x-env", " canary ")
	f.Add("[::1]", "", "", "", "", "GET", "[0::1]:80", "/", "", "")
	f.Add("api.example.com.", "/", "", "POST", "X-A", "POST", "api.example.com.", "/", "X-A", "")
	f.Add("*", "a", "(", "get", ": x", "", "", "", "", "")
	f.Add("a.*.com", "/a?b", `\1`, "PUT, POST", "X-A : b", "", "", "", "", "")
	f.Add("", "", "", "", "X-Empty:", "GET", "", "/", "X-Empty", "\t")
	f.Add("[::ffff:1.2.3.4]", "", "", "", "", "GET", "[::ffff:102:304]", "/", "", "")
	f.Fuzz(func(t *testing.T, host, prefix, re, method, header, reqMethod, reqHost, reqPath, hName, hValue string) {
		spec := RouteSpec{Host: list(host), PathPrefix: list(prefix), PathRegex: re, Method: list(method), Header: list(header)}
		r, err := CompileRoute(spec)
		if err != nil {
			checkFuzzError(t, err)
			if se := err.(*SpecError); se.Value != routeValue(spec, se.Key, se.Index) {
				t.Fatalf("error %+v, with the wrong value", se)
			}
			return
		}
		h := hdr(hName, hValue)
		got := r.Match([]byte(reqMethod), []byte(reqHost), []byte(reqPath), h)
		if want := refMatch(spec, reqMethod, reqHost, reqPath, h); got != want {
			t.Fatalf("Match(%q, %q, %q, %s) = %v, want %v", reqMethod, reqHost, reqPath, h, got, want)
		}
		r.Match(nil, nil, nil, nil)
	})
}

// refMatch is what Match should return for a spec with at most one element
// per list, written plainly.
func refMatch(s RouteSpec, method, host, path string, h *fakeHeader) bool {
	path, _, _ = strings.Cut(path, "?")
	if len(s.Method) > 0 && method != s.Method[0] {
		return false
	}
	if len(s.Host) > 0 && !refHostMatch(s.Host[0], host) {
		return false
	}
	if len(s.PathPrefix) > 0 && !strings.HasPrefix(path, s.PathPrefix[0]) {
		return false
	}
	if len(s.Header) > 0 {
		name, value, hasValue := strings.Cut(s.Header[0], ":")
		v, ok := h.Get(name)
		if !ok || hasValue && strings.Trim(string(v), " \t") != strings.Trim(value, " \t") {
			return false
		}
	}
	return s.PathRegex == "" || regexp.MustCompile(s.PathRegex).MatchString(path)
}

// refHostMatch is whether a request's host matches a valid host pattern,
// written plainly.
func refHostMatch(pattern, host string) bool {
	if strings.HasPrefix(host, "[") {
		end := strings.IndexByte(host, ']')
		if end < 0 || !strings.HasPrefix(pattern, "[") {
			return false
		}
		if port := host[end+1:]; port != "" && (port[0] != ':' || !isDigits(port[1:])) {
			return false
		}
		a, err := netip.ParseAddr(host[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return false
		}
		return netip.MustParseAddr(pattern[1:len(pattern)-1]) == a
	}
	if strings.HasPrefix(pattern, "[") {
		return false
	}
	name, port, _ := strings.Cut(host, ":")
	if !isDigits(port) {
		return false
	}
	name = strings.TrimSuffix(lowerASCII(name), ".")
	pattern = strings.TrimSuffix(lowerASCII(pattern), ".")
	if suffix, ok := strings.CutPrefix(pattern, "*"); ok {
		sub, ok := strings.CutSuffix(name, suffix)
		return ok && sub != "" && !strings.HasSuffix(sub, ".")
	}
	return name == pattern
}

// lowerASCII lowers the ASCII letters of s, and only those.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// fuzzEnv builds an Env from fuzzed values.
func fuzzEnv(ip string, port uint16, str, b string) *Env {
	a, _ := netip.ParseAddr(ip)
	return &Env{
		Client:     netip.AddrPortFrom(a, port),
		Server:     str,
		ServerAddr: str,
		Backend:    str,
		Frontend:   str,
		RequestID:  []byte(b),
		Scheme:     str,
		Host:       []byte(b),
	}
}

// checkClean fails when a header value holds a control character other than
// tab: whatever the Env, an expansion never does.
func checkClean(t *testing.T, v []byte) {
	t.Helper()
	for _, c := range v {
		if isCTL(c) {
			t.Fatalf("expansion %q holds a control character", v)
		}
	}
}

// FuzzTemplate checks that CompileTemplate never panics, that a template's
// String round-trips through it, and that its expansion never holds CR, LF,
// NUL or another control character but tab.
func FuzzTemplate(f *testing.F) {
	f.Add("for=%[client];host=%[host]", "2001:db8::1", uint16(443), "s1", "api.example.com")
	f.Add("100%% %[client_ip]:%[client_port]", "::ffff:192.0.2.1", uint16(80), "", "")
	f.Add("%[server] %[server_addr] %[backend] %[frontend] %[request_id] %[scheme]", "", uint16(0), "a\r\nb", "\x00")
	f.Add("50%", "", uint16(0), "", "")
	f.Add("%[nope] %[", "", uint16(0), "", "")
	f.Add("a\nb", "fe80::1%eth\n0", uint16(1), "", "")
	f.Fuzz(func(t *testing.T, src, ip string, port uint16, str, b string) {
		tmpl, err := CompileTemplate(src)
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if tmpl.String() != src {
			t.Fatalf("String() = %q, want %q", tmpl.String(), src)
		}
		again, err := CompileTemplate(tmpl.String())
		if err != nil {
			t.Fatalf("the template's String does not compile: %v", err)
		}
		env := fuzzEnv(ip, port, str, b)
		out := tmpl.Append(nil, env)
		checkClean(t, out)
		if out2 := again.Append(nil, env); string(out2) != string(out) {
			t.Fatalf("the recompiled template expands to %q, not %q", out2, out)
		}
		if !strings.Contains(src, "%") && string(out) != src {
			t.Fatalf("a template without %% expands to %q, not itself", out)
		}
	})
}

// FuzzCompileHeaderRule checks that CompileHeaderRule never panics and
// returns a *SpecError or a rule, and that the rule does what it says.
func FuzzCompileHeaderRule(f *testing.F) {
	f.Add("set", "", "X-Real-IP", "%[client_ip]", "192.0.2.1", uint16(5), "s", "id")
	f.Add("add", "response", "Via", "1.1 lb", "", uint16(0), "", "")
	f.Add("delete", "request", "X-A", "", "", uint16(0), "", "")
	f.Add("delete", "request", "Host", "", "", uint16(0), "", "")
	f.Add("set", "both", "Content-Length", "50%", "", uint16(0), "", "")
	f.Add("SET", "Response", "X A", "%[x]", "", uint16(0), "", "")
	f.Fuzz(func(t *testing.T, action, on, name, value, ip string, port uint16, str, b string) {
		r, err := CompileHeaderRule(HeaderRuleSpec{Action: action, On: on, Name: name, Value: value})
		if err != nil {
			checkFuzzError(t, err)
			return
		}
		if r.Response() != (on == "response") {
			t.Fatalf("Response() = %v with on %q", r.Response(), on)
		}
		env := fuzzEnv(ip, port, str, b)
		var want []byte
		if action != "delete" {
			want = r.value.Append(nil, env)
			checkClean(t, want)
		}
		h := hdr(name, "old", "Other", "x", strings.ToUpper(name), "old2")
		r.Apply(h, env, nil)
		got := h.values(name)
		switch action {
		case "set":
			if len(got) != 1 || got[0] != string(want) {
				t.Fatalf("after set, %s = %q, want %q", name, got, want)
			}
		case "add":
			if len(got) != 3 || got[2] != string(want) {
				t.Fatalf("after add, %s = %q, want old values then %q", name, got, want)
			}
		case "delete":
			if len(got) != 0 {
				t.Fatalf("after delete, %s = %q", name, got)
			}
		default:
			t.Fatalf("action %q compiled", action)
		}
		if v := h.values("Other"); !strings.EqualFold(name, "Other") && len(v) != 1 {
			t.Fatalf("Other = %q, changed by a rule on %s", v, name)
		}
	})
}
