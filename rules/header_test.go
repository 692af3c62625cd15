package rules

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// testEnv is an Env with every variable set, and an IPv4 client.
func testEnv() *Env {
	return &Env{
		Client:     netip.MustParseAddrPort("192.0.2.7:51234"),
		Server:     "s1",
		ServerAddr: "10.0.0.5:8080",
		Backend:    "app",
		Frontend:   "web",
		RequestID:  []byte("01J9Z3"),
		Scheme:     "https",
		Host:       []byte("api.example.com:8443"),
	}
}

func mustHeaderRule(t testing.TB, s HeaderRuleSpec) *HeaderRule {
	t.Helper()
	r, err := CompileHeaderRule(s)
	if err != nil {
		t.Fatalf("CompileHeaderRule(%+v): %v", s, err)
	}
	return r
}

func TestHeaderRuleApply(t *testing.T) {
	tests := []struct {
		name   string
		spec   HeaderRuleSpec
		before []string // name, value, ...
		want   string   // the fields after, as "Name: value\n" lines
	}{
		{
			"set replaces every field",
			HeaderRuleSpec{Action: "set", Name: "X-Real-IP", Value: "%[client_ip]"},
			[]string{"x-real-ip", "1.1.1.1", "Accept", "*/*", "X-Real-IP", "2.2.2.2"},
			"x-real-ip: 192.0.2.7\nAccept: */*\n",
		},
		{
			"set adds a missing field",
			HeaderRuleSpec{Action: "set", Name: "X-Proto", Value: "%[scheme]"},
			[]string{"Accept", "*/*"},
			"Accept: */*\nX-Proto: https\n",
		},
		{
			"set Host on a request",
			HeaderRuleSpec{Action: "set", Name: "Host", Value: "internal.example"},
			[]string{"Host", "api.example.com"},
			"Host: internal.example\n",
		},
		{
			"add appends",
			HeaderRuleSpec{Action: "add", Name: "Via", Value: "1.1 lb"},
			[]string{"Via", "1.0 other", "Accept", "*/*"},
			"Via: 1.0 other\nAccept: */*\nVia: 1.1 lb\n",
		},
		{
			"add an empty value",
			HeaderRuleSpec{Action: "add", Name: "X-Empty"},
			nil,
			"X-Empty: \n",
		},
		{
			"delete removes every field",
			HeaderRuleSpec{Action: "delete", Name: "X-Powered-By", On: "response"},
			[]string{"X-Powered-By", "PHP", "Server", "x", "x-powered-by", "Go"},
			"Server: x\n",
		},
		{
			"delete a missing field",
			HeaderRuleSpec{Action: "delete", Name: "X-Powered-By"},
			[]string{"Server", "x"},
			"Server: x\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := mustHeaderRule(t, tc.spec)
			h := hdr(tc.before...)
			scratch := r.Apply(h, testEnv(), nil)
			if got := h.String(); got != tc.want {
				t.Errorf("fields after:\n%swant:\n%s", got, tc.want)
			}
			// scratch is reused, and the editor copied the value.
			for i := range scratch {
				scratch[i] = '!'
			}
			if got := h.String(); got != tc.want {
				t.Errorf("fields changed with scratch:\n%s", got)
			}
		})
	}
}

func TestHeaderRuleResponse(t *testing.T) {
	tests := []struct {
		on   string
		want bool
	}{
		{"", false},
		{"request", false},
		{"response", true},
	}
	for _, tc := range tests {
		t.Run(tc.on, func(t *testing.T) {
			r := mustHeaderRule(t, HeaderRuleSpec{Action: "set", On: tc.on, Name: "X-A", Value: "1"})
			if got := r.Response(); got != tc.want {
				t.Errorf("Response() = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTemplateAppend(t *testing.T) {
	v6 := testEnv()
	v6.Client = netip.MustParseAddrPort("[2001:db8::1]:443")
	mapped := testEnv()
	mapped.Client = netip.AddrPortFrom(netip.MustParseAddr("::ffff:192.0.2.9"), 80)
	dirty := &Env{Host: []byte("a\r\nX-Evil: 1"), RequestID: []byte("id\x00\x7f\tend"), Server: "s\n"}
	tests := []struct {
		name string
		src  string
		env  *Env
		want string
	}{
		{"literal", "plain text", testEnv(), "plain text"},
		{"empty", "", testEnv(), ""},
		{"percent", "100%% sure %%[client_ip]", testEnv(), "100% sure %[client_ip]"},
		{"client_ip", "%[client_ip]", testEnv(), "192.0.2.7"},
		{"client_port", "%[client_port]", testEnv(), "51234"},
		{"client", "%[client]", testEnv(), "192.0.2.7:51234"},
		{"client_ip v6", "%[client_ip]", v6, "2001:db8::1"},
		{"client_port v6", "%[client_port]", v6, "443"},
		{"client v6", "%[client]", v6, "[2001:db8::1]:443"},
		{"client_ip mapped", "%[client_ip]", mapped, "192.0.2.9"},
		{"client mapped", "%[client]", mapped, "192.0.2.9:80"},
		{"server", "%[server]", testEnv(), "s1"},
		{"server_addr", "%[server_addr]", testEnv(), "10.0.0.5:8080"},
		{"backend", "%[backend]", testEnv(), "app"},
		{"frontend", "%[frontend]", testEnv(), "web"},
		{"request_id", "%[request_id]", testEnv(), "01J9Z3"},
		{"scheme", "%[scheme]", testEnv(), "https"},
		{"host", "%[host]", testEnv(), "api.example.com:8443"},
		{"mixed", "for=%[client];proto=%[scheme];by=%[frontend]/%[backend]/%[server]", v6,
			"for=[2001:db8::1]:443;proto=https;by=web/app/s1"},
		{"adjacent variables", "%[scheme]%[host]%%", testEnv(), "httpsapi.example.com:8443%"},
		{"zero env", "[%[client_ip]|%[client_port]|%[client]|%[server]|%[host]]", &Env{}, "[||||]"},
		{"nil env", "a%[client]b%[request_id]c", nil, "abc"},
		{"control characters in values", "%[host]|%[request_id]|%[server]", dirty, "a  X-Evil: 1|id  \tend|s "},
		{"tab and UTF-8", "a\tb é", nil, "a\tb é"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tmpl, err := CompileTemplate(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.String(); got != tc.src {
				t.Errorf("String() = %q, want %q", got, tc.src)
			}
			got := tmpl.Append([]byte("prefix:"), tc.env)
			if string(got) != "prefix:"+tc.want {
				t.Errorf("Append = %q, want %q", got, "prefix:"+tc.want)
			}
		})
	}
}

func TestVars(t *testing.T) {
	want := []string{"client_ip", "client_port", "client", "server", "server_addr", "backend", "frontend", "request_id", "scheme", "host"}
	if !slices.Equal(Vars, want) || !slices.Equal(varNames[1:], want) {
		t.Fatalf("Vars = %q, varNames = %q, want %q", Vars, varNames[1:], want)
	}
	for _, v := range Vars {
		t.Run(v, func(t *testing.T) {
			if _, err := CompileTemplate("%[" + v + "]"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCompileTemplateErrors(t *testing.T) {
	tests := []struct {
		src  string
		frag string
	}{
		{"100%", `ends with a lone "%": write %% for a literal percent sign`},
		{"100% sure", `has "% ", which is neither %[name] nor %%: write %% for a literal percent sign`},
		{"%é", `has "%é"`},
		{"%[client_ip", `has "%[client_ip" without a closing "]": write %[name] for a variable, or %% for a literal percent sign`},
		{"%[" + strings.Repeat("x", 40), `has "%[xxxxxxxxxxxxxxxxxxxxxx..." without a closing "]"`},
		{"%[clientip]", `has unknown variable "%[clientip]": write "%[client_ip]"`},
		{"%[Client-IP]", `write "%[client_ip]"`},
		{"%[]", `has unknown variable "%[]": use one of client_ip, client_port, client, server, server_addr, backend, frontend, request_id, scheme, host`},
		{"%[path]", `has unknown variable "%[path]": use one of client_ip`},
		{"a\nb", `contains a line feed (\n), which cannot appear in a header value: remove it`},
		{"a\rb", `contains a carriage return (\r)`},
		{"a\x00b", "contains a NUL byte"},
		{"a\x01b", "contains control character 0x01"},
		{"a\x7fb", "contains a DEL character (0x7f)"},
	}
	for _, tc := range tests {
		t.Run(tc.src, func(t *testing.T) {
			tmpl, err := CompileTemplate(tc.src)
			if err == nil {
				t.Fatalf("CompileTemplate = %q, want an error", tmpl)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want a *SpecError", err, err)
			}
			checkSpecError(t, se, "value", -1, tc.frag)
			if se.Value != tc.src {
				t.Errorf("Value = %q, want %q", se.Value, tc.src)
			}
		})
	}
}

func TestCompileHeaderRuleErrors(t *testing.T) {
	tests := []struct {
		name string
		spec HeaderRuleSpec
		key  string
		frag string
	}{
		{"no action", HeaderRuleSpec{Name: "X-A"}, "action", `is missing: write "set", "add" or "delete"`},
		{"bad action", HeaderRuleSpec{Action: "put", Name: "X-A"}, "action", `is not an action: write "set", "add" or "delete"`},
		{"action synonym", HeaderRuleSpec{Action: "remove", Name: "X-A"}, "action", `is not an action: write "delete"`},
		{"upper-case action", HeaderRuleSpec{Action: "SET", Name: "X-A"}, "action", `is not lower case: write "set"`},
		{"bad on", HeaderRuleSpec{Action: "set", On: "both", Name: "X-A"}, "on", `is neither "request" nor "response": write one of them, or leave on out`},
		{"upper-case on", HeaderRuleSpec{Action: "set", On: "Response", Name: "X-A"}, "on", `is not lower case: write "response"`},
		{"no name", HeaderRuleSpec{Action: "set"}, "name", `is missing: name the header field to change`},
		{"name with colon", HeaderRuleSpec{Action: "set", Name: "X-A: 1"}, "name", `contains ":": write only the field's name, and its value as value`},
		{"name with space", HeaderRuleSpec{Action: "set", Name: "X A"}, "name", `contains a space, which cannot appear in a field name: use letters, digits and "-"`},
		{"content-length", HeaderRuleSpec{Action: "set", Name: "Content-Length", Value: "0"}, "name", "frames the message body, which lb does itself: header rules cannot change it"},
		{"transfer-encoding", HeaderRuleSpec{Action: "delete", Name: "transfer-encoding"}, "name", "frames the message body"},
		{"trailer", HeaderRuleSpec{Action: "add", Name: "Trailer", Value: "x"}, "name", "after a chunked body"},
		{"connection", HeaderRuleSpec{Action: "delete", On: "response", Name: "Connection"}, "name", "is hop-by-hop, managed by lb on each connection: header rules cannot change it"},
		{"keep-alive", HeaderRuleSpec{Action: "set", Name: "Keep-Alive", Value: "timeout=5"}, "name", "hop-by-hop"},
		{"proxy-connection", HeaderRuleSpec{Action: "set", Name: "Proxy-Connection", Value: "close"}, "name", "hop-by-hop"},
		{"te", HeaderRuleSpec{Action: "set", Name: "TE", Value: "trailers"}, "name", "hop-by-hop"},
		{"upgrade", HeaderRuleSpec{Action: "delete", Name: "UPGRADE"}, "name", "hop-by-hop"},
		{"add host", HeaderRuleSpec{Action: "add", Name: "Host", Value: "x"}, "name", `a request has exactly one Host field; use action "set" to replace it`},
		{"delete host", HeaderRuleSpec{Action: "delete", On: "request", Name: "host"}, "name", `a request must have a Host field; use action "set"`},
		{"delete with value", HeaderRuleSpec{Action: "delete", Name: "X-A", Value: "1"}, "value", `is not used by "delete": remove it`},
		{"bad template", HeaderRuleSpec{Action: "set", Name: "X-A", Value: "50%"}, "value", "write %% for a literal percent sign"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := CompileHeaderRule(tc.spec)
			if err == nil {
				t.Fatalf("CompileHeaderRule = %v, want an error", r)
			}
			var se *SpecError
			if !errors.As(err, &se) {
				t.Fatalf("error %T %v, want a *SpecError", err, err)
			}
			checkSpecError(t, se, tc.key, -1, tc.frag)
			values := map[string]string{"action": tc.spec.Action, "on": tc.spec.On, "name": tc.spec.Name, "value": tc.spec.Value}
			if se.Value != values[tc.key] {
				t.Errorf("Value = %q, want %q", se.Value, values[tc.key])
			}
		})
	}
}

func TestCompileHeaderRuleAccepts(t *testing.T) {
	for _, s := range []HeaderRuleSpec{
		{Action: "set", Name: "Host", Value: "%[host]"},
		{Action: "add", On: "response", Name: "Host", Value: "x"},
		{Action: "delete", On: "response", Name: "Host"},
		{Action: "set", Name: "X-A"},
		{Action: "add", Name: "Strict-Transport-Security", On: "response", Value: "max-age=63072000"},
		{Action: "delete", Name: "X-Forwarded-For"},
	} {
		if _, err := CompileHeaderRule(s); err != nil {
			t.Errorf("CompileHeaderRule(%+v): %v", s, err)
		}
	}
}

func TestApplyAllocs(t *testing.T) {
	v6 := testEnv()
	v6.Client = netip.MustParseAddrPort("[2001:db8::1]:443")
	all := "%[client_ip] %[client_port] %[client] %[server] %[server_addr] %[backend] %[frontend] %[request_id] %[scheme] %[host] %%"
	for _, spec := range []HeaderRuleSpec{
		{Action: "set", Name: "X-All", Value: all},
		{Action: "add", Name: "X-All", Value: all},
		{Action: "delete", Name: "X-All"},
	} {
		t.Run(spec.Action, func(t *testing.T) {
			r := mustHeaderRule(t, spec)
			h := hdr("Accept", "*/*", "X-All", "old")
			base := len(h.f)
			scratch := make([]byte, 0, 256)
			for _, env := range []*Env{testEnv(), v6} {
				allocs := testing.AllocsPerRun(100, func() {
					h.f = h.f[:base]
					h.Add("X-All", nil)
					scratch = r.Apply(h, env, scratch)
				})
				if allocs != 0 {
					t.Errorf("Apply allocates %v times", allocs)
				}
			}
		})
	}
}
