package benchutil

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// StartTestHTTPBackend starts an HTTPBackend on a free loopback port that
// stops with the test t.
func StartTestHTTPBackend(t testing.TB, name string, body int) *HTTPBackend {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b, err := StartHTTPBackend(ctx, "127.0.0.1:0", name, body)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		b.Close()
	})
	return b
}

// CheckHAProxyConfig has HAProxy check cfg (haproxy -c), and fails t if it
// refuses it, or if it warns and noWarnings is set, or if HAProxy is not
// installed: a comparison with HAProxy is only as good as its
// configuration.
func CheckHAProxyConfig(t testing.TB, cfg string, noWarnings bool) {
	t.Helper()
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed, so the configuration the benchmark gives it cannot be checked: apt-get install haproxy (make tools and .ci/run install it)")
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-c", "-f", path).CombinedOutput()
	if err != nil || (noWarnings && strings.Contains(string(out), "WARNING")) {
		t.Errorf("haproxy -c: %v\n%s", err, out)
	}
}
