package admin

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Files at the names an admin socket used to be created under first
// (".lb-admin-<pid>" next to it) do not stop a generation from starting,
// nor the next one from taking the path over; what Listen makes, Close
// removes.
func TestListenIgnoresPlantedNames(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	// A directory with something in it, which not even root can remove
	// with a plain remove: at this process's name, where the old scheme
	// put the socket, and at a few names around it.
	for pid := max(os.Getpid()-5, 1); pid <= os.Getpid()+5; pid++ {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf(".lb-admin-%d", pid), "planted"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	planted := entries(t, dir)
	reply := func(s string) Handler {
		return HandlerFunc(func(w io.Writer, _ *Request) error { _, err := io.WriteString(w, s); return err })
	}
	old := serve(t, path, map[string]Handler{"who": reply("old")})
	if got, err := Query(path, "who", 5*time.Second); got != "old" {
		t.Fatalf("first socket: %q, %v", got, err)
	}
	next := serve(t, path, map[string]Handler{"who": reply("new")})
	if got, err := Query(path, "who", 5*time.Second); got != "new" {
		t.Fatalf("after the next socket was published: %q, %v", got, err)
	}
	old.Close()
	next.Close()
	if got := entries(t, dir); !slices.Equal(got, planted) {
		t.Errorf("after both sockets closed, %s holds %v; want only what was planted, %v", dir, got, planted)
	}
}

// Until Publish, the socket is in a directory of mode 0700 that only lb can
// enter; Publish and Close leave nothing of it behind.
func TestListenPrivateDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "admin.sock")
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	got := entries(t, dir)
	if len(got) != 1 || !strings.HasPrefix(got[0], ".lb-admin-") {
		t.Fatalf("after Listen, %s holds %v; want one .lb-admin-* directory", dir, got)
	}
	private := filepath.Join(dir, got[0])
	if fi, err := os.Lstat(private); err != nil || fi.Mode() != os.ModeDir|0o700 {
		t.Fatalf("the temporary directory %s: %v, %v; want a directory of mode 0700", private, fi.Mode(), err)
	}
	if fi, err := os.Lstat(s.tmp); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the socket under its temporary name %s: %v, %v; want a socket of mode 0600", s.tmp, fi.Mode(), err)
	}
	if err := s.Publish(); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, dir); !slices.Equal(got, []string{"admin.sock"}) {
		t.Errorf("after Publish, %s holds %v; want just admin.sock", dir, got)
	}
	s.Close()
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("after Close, %s holds %v; want nothing", dir, got)
	}

	// A start that fails before Publish leaves nothing either.
	s, err = Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("after Close without Publish, %s holds %v; want nothing", dir, got)
	}
}

func TestListenPathTooLong(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "a.sock")
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), "admin socket "+path+": ") || !strings.Contains(err.Error(), "choose a shorter admin_socket path") {
		t.Fatalf("Listen(%s): %v; want an error that says the path is too long", path, err)
	}
	if got := entries(t, dir); len(got) != 0 {
		t.Errorf("after a failed Listen, %s holds %v; want nothing", dir, got)
	}
}

// entries returns the names in dir, sorted.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}
