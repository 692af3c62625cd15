package servers

import (
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/admin"
	"lb/internal/testproxy"
	"lb/state"
)

// newSet returns the servers of a configuration with backend "app" and
// servers s1 (weight 2), s2 and s3, unchecked.
func newSet(t *testing.T) *Set {
	t.Helper()
	_, _, p := testproxy.Build(t, `[[frontend]]
name = "web"
bind = ["127.0.0.1:1"]
default_backend = "app"

[[backend]]
name = "app"
[backend.check]
type = "none"

[[backend.server]]
name = "s1"
address = "127.0.0.1:9001"
weight = 2

[[backend.server]]
name = "s2"
address = "127.0.0.1:9002"

[[backend.server]]
name = "s3"
address = "127.0.0.1:9003"
`)
	return New(p, zerolog.Nop())
}

func byName(ss []state.Server) map[string]state.Server {
	m := map[string]state.Server{}
	for _, s := range ss {
		m[s.Server] = s
	}
	return m
}

// What operators set survives a handover, by the rules the README gives:
// the admin state always, the runtime weight unless the configured weight
// changed, nothing for a server whose address changed.
func TestSetUpTakesOverWhatOperatorsSet(t *testing.T) {
	s := newSet(t)
	saved := state.New(7, []state.Server{
		{Backend: "app", Server: "s1", Address: "127.0.0.1:9001", ConfigWeight: 1, Admin: "drain", Weight: 9},
		{Backend: "app", Server: "s2", Address: "127.0.0.1:9002", ConfigWeight: 1, Admin: "maint", Weight: 5},
		{Backend: "app", Server: "s3", Address: "10.0.0.3:80", ConfigWeight: 1, Admin: "maint", Weight: 5},
	})
	s.SetUp(context.Background(), saved, "test", time.Second)
	got := byName(s.Snapshot())
	if g := got["s1"]; g.Admin != "drain" || g.Weight != 2 {
		t.Errorf("s1 (configured weight changed 1 -> 2): %+v, want drain kept, weight 2 from the configuration", g)
	}
	if g := got["s2"]; g.Admin != "maint" || g.Weight != 5 {
		t.Errorf("s2: %+v, want maint and weight 5 kept", g)
	}
	if g := got["s3"]; g.Admin != "ready" || g.Weight != 1 {
		t.Errorf("s3 (address changed): %+v, want a fresh start", g)
	}
}

// The commands Register adds change what Snapshot hands over.
func TestRegisteredCommands(t *testing.T) {
	s := newSet(t)
	s.SetUp(context.Background(), state.Doc{}, "none", time.Second)
	var a admin.Server
	s.Register(&a)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.Serve(ctx, ln)
	ask := func(cmd string) string {
		c, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = io.WriteString(c, cmd+"\n")
		b, _ := io.ReadAll(c)
		return string(b)
	}
	if got := ask("set server app/s2 state maint"); got != "server app/s2 is now maint\n" {
		t.Fatalf("set server state: %q", got)
	}
	if got := ask("set server app/s3 weight 7"); got != "server app/s3 weight is now 7\n" {
		t.Fatalf("set server weight: %q", got)
	}
	if got := ask("set server app/nope state drain"); !strings.Contains(got, `no server "nope" in backend "app" (servers: s1, s2, s3)`) {
		t.Fatalf("set server on an unknown server: %q", got)
	}
	if got := ask("show servers state"); !strings.Contains(got, "app s2 127.0.0.1:9002 up maint 1 1 none -\n") {
		t.Fatalf("show servers state:\n%s", got)
	}
	m := byName(s.Snapshot())
	if m["s2"].Admin != "maint" || m["s3"].Weight != 7 {
		t.Fatalf("Snapshot after the commands: %+v", m)
	}
}
