// Package testproxy builds what a configuration serves, for the tests of
// the packages that take a built proxy (lifecycle, servers).
package testproxy

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"lb/config"
	"lb/provision"
	"lb/proxy"
)

// Build writes text to lb.toml in a new temporary directory, loads it and
// builds its proxy, failing the test on any error. It returns the file's
// path too.
func Build(t testing.TB, text string) (string, *config.Config, *proxy.Proxy) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "lb.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	p, err := provision.Build(context.Background(), cfg, nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg, p
}
