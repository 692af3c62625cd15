package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// TestHTTPTargetAndHost: request targets hold only visible ASCII without a
// fragment (HAProxy answers 400 too), and an HTTP/1.0 request without Host
// reaches the server, in HTTP/1.1, with the address the client connected
// to as its Host.
func TestHTTPTargetAndHost(t *testing.T) {
	rec := startRecordingBackend(t, "rec")
	_, addr := startHTTPLB(t, "", "", "[[backend]]\nname = \"app\"\n"+rec.line())
	for _, tc := range []struct{ name, raw string }{
		{"raw UTF-8 in the target", "GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"byte 0x80 in the target", "GET /a\x80b HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"byte 0xff in the query", "GET /a?q=\xff HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"fragment", "GET /a#frag HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"fragment in absolute-form", "GET http://a/b#frag HTTP/1.1\r\nHost: a\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := rawHTTP(t, addr, tc.raw); r.StatusCode != 400 {
				t.Errorf("status %d, want 400", r.StatusCode)
			}
			if got := rec.take(); len(got) > 0 {
				t.Errorf("the server received %q", got)
			}
		})
	}
	t.Run("HTTP/1.0 without Host", func(t *testing.T) {
		if r := rawHTTP(t, addr, "GET /old HTTP/1.0\r\n\r\n"); r.StatusCode != 200 {
			t.Fatalf("status %d, want 200", r.StatusCode)
		}
		got := rec.take()
		if len(got) != 1 {
			t.Fatalf("the server received %q, want one head", got)
		}
		for _, want := range []string{"GET /old HTTP/1.1\r\n", fmt.Sprintf("\r\nHost: %s\r\n", addr), fmt.Sprintf("\r\nX-Forwarded-Host: %s\r\n", addr)} {
			if !strings.Contains(got[0], want) {
				t.Errorf("head %q lacks %q", got[0], want)
			}
		}
	})
	t.Run("HTTP/1.0 with Host", func(t *testing.T) {
		if r := rawHTTP(t, addr, "GET /old HTTP/1.0\r\nHost: named.example\r\n\r\n"); r.StatusCode != 200 {
			t.Fatalf("status %d, want 200", r.StatusCode)
		}
		if got := rec.take(); len(got) != 1 || !strings.Contains(got[0], "\r\nHost: named.example\r\n") || strings.Count(got[0], "\r\nHost:") != 1 {
			t.Errorf("the server received %q, want the client's Host alone", got)
		}
	})
}
