package rules

import (
	"net/netip"
	"testing"
)

func BenchmarkTableLookup(b *testing.B) {
	table := testTable(b) // 12 routes
	h := hdr("Accept", "*/*", "User-Agent", "bench", "X-A", "1", "X-B", "2")
	for _, bc := range []struct{ name, method, host, path string }{
		{"first", "GET", "api.example.com", "/"},
		{"wildcard", "GET", "a.b.example.com:443", "/static/app.js"},
		{"ipv6", "GET", "[::1]:8080", "/"},
		{"regex", "GET", "x", "/users/12345?tab=1"},
		{"last", "GET", "all.test", "/a/b"},
		{"miss", "GET", "nowhere.test", "/nothing/here"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, host, path := []byte(bc.method), []byte(bc.host), []byte(bc.path)
			b.ReportAllocs()
			for b.Loop() {
				table.Lookup(m, host, path, h)
			}
		})
	}
}

func BenchmarkHeaderRuleApply(b *testing.B) {
	env := testEnv()
	env.Client = netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, bc := range []struct {
		name string
		spec HeaderRuleSpec
	}{
		{"set-literal", HeaderRuleSpec{Action: "set", Name: "X-Proxy", Value: "lb"}},
		{"set-forwarded", HeaderRuleSpec{Action: "set", Name: "Forwarded", Value: "for=\"%[client]\";proto=%[scheme];host=%[host]"}},
		{"add-request-id", HeaderRuleSpec{Action: "add", Name: "X-Request-ID", Value: "%[request_id]"}},
		{"delete", HeaderRuleSpec{Action: "delete", Name: "X-Request-ID"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := mustHeaderRule(b, bc.spec)
			h := hdr("Host", "api.example.com", "Accept", "*/*", "User-Agent", "bench")
			base := len(h.f)
			var scratch []byte
			b.ReportAllocs()
			for b.Loop() {
				h.f = h.f[:base]
				h.Add("X-Request-ID", env.RequestID)
				scratch = r.Apply(h, env, scratch)
			}
		})
	}
}
