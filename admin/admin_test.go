package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// serve publishes an admin socket at path with the given commands and
// stops it when the test ends.
func serve(t *testing.T, path string, commands map[string]Handler) *Socket {
	t.Helper()
	sock, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := sock.Publish(); err != nil {
		t.Fatal(err)
	}
	var s Server
	for cmd, h := range commands {
		s.Handle(cmd, "", h)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Serve(ctx, sock.Listener) }()
	t.Cleanup(func() { cancel(); wg.Wait(); sock.Close() })
	return sock
}

func TestCommands(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	serve(t, path, map[string]Handler{
		"show info": HandlerFunc(func(w io.Writer, r *Request) error {
			fmt.Fprintf(w, "pid: 1\nargs: %q\n", r.Args)
			return nil
		}),
		"set server": HandlerFunc(func(w io.Writer, r *Request) error { return errors.New("no such server") }),
		"panic":      HandlerFunc(func(w io.Writer, r *Request) error { panic("boom") }),
	})
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}
	for _, tc := range []struct {
		cmd, want string
		err       string
	}{
		{"show info", "pid: 1\nargs: []\n", ""},
		{"  show   info  extra  ", "pid: 1\nargs: [\"extra\"]\n", ""},
		{"set server app/s1 state drain", "", "no such server"},
		{"show nothing", "", `unknown command "show nothing": commands are help, panic, set server, show info`},
		{"panic", "", `command "panic" failed: boom`},
	} {
		got, err := Query(path, tc.cmd, 5*time.Second)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("%q: error %v, want %q", tc.cmd, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q = %q, %v; want %q", tc.cmd, got, err, tc.want)
		}
	}
	// A client that sends nothing gets an error line, and the server goes on.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.(*net.UnixConn).CloseWrite()
	b, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "error: no command") {
		t.Errorf("empty request answered %q", b)
	}
	if _, err := Query(path, "show info", 5*time.Second); err != nil {
		t.Errorf("after an empty request: %v", err)
	}
}

func TestTakeOverPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	reply := func(s string) Handler {
		return HandlerFunc(func(w io.Writer, _ *Request) error { _, err := io.WriteString(w, s); return err })
	}
	old := serve(t, path, map[string]Handler{"who": reply("old")})
	if got, _ := Query(path, "who", 5*time.Second); got != "old" {
		t.Fatalf("got %q", got)
	}
	serve(t, path, map[string]Handler{"who": reply("new")})
	if got, _ := Query(path, "who", 5*time.Second); got != "new" {
		t.Fatalf("after the new socket was published, got %q", got)
	}
	// The old generation exits: the path is the new one's and stays.
	old.Close()
	if got, err := Query(path, "who", 5*time.Second); got != "new" {
		t.Fatalf("after the old socket closed: %q, %v", got, err)
	}
}

// Query sends command to the admin socket at path and returns the reply.
func Query(path, command string, timeout time.Duration) (string, error) {
	c, err := Dial(path, timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := io.WriteString(c, command+"\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	reply := string(b)
	if strings.HasPrefix(reply, "error: ") {
		return "", errors.New(strings.TrimSpace(strings.TrimPrefix(reply, "error: ")))
	}
	return reply, nil
}
