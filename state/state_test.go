package state

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	d := New(4, []Server{
		{Backend: "app", Server: "s1", Address: "10.0.0.1:80", ConfigWeight: 1, Checked: true, Up: false, Count: 1, Admin: "ready", Weight: 1},
		{Backend: "app", Server: "s2", Address: "10.0.0.2:80", ConfigWeight: 3, Admin: "drain", Weight: 7},
	})
	var buf bytes.Buffer
	if err := Encode(&buf, d); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Servers, d.Servers) || got.Generation != 4 {
		t.Fatalf("round trip: %+v", got)
	}
	path := filepath.Join(t.TempDir(), "lb.state")
	if err := WriteFile(path, d); err != nil {
		t.Fatal(err)
	}
	fromFile, err := ReadFile(path)
	if err != nil || !reflect.DeepEqual(fromFile.Servers, d.Servers) {
		t.Fatalf("file: %+v, %v", fromFile, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	s, ok := fromFile.Index().Lookup("app", "s2")
	if !ok || s.Admin != "drain" || s.Weight != 7 {
		t.Fatalf("Lookup = %+v, %v", s, ok)
	}
	if _, ok := fromFile.Index().Lookup("app", "s3"); ok {
		t.Fatal("found a server that is not there")
	}
}

func TestDecodeRefusesOtherVersions(t *testing.T) {
	for _, in := range []string{`{"version":2,"servers":[]}`, `not json`, ``} {
		if _, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("Decode(%q) accepted it", in)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Errorf("missing file: %v", err)
	}
}

// A state file that someone else could have written is not read: a
// symbolic link (lb does not follow it), a file of another user, a file
// that group or others may write, and anything but a regular file. lb's
// own file, written by WriteFile, is read.
func TestReadFileRefusesUntrustedFiles(t *testing.T) {
	doc := New(41, []Server{{Backend: "app", Server: "s1", Address: "10.0.0.1:80", ConfigWeight: 1, Admin: "maint", Weight: 1}})
	for _, tc := range []struct {
		name string
		make func(t *testing.T, path string) // makes the state file at path
		want []string                        // in the error, besides the path
	}{
		{"symbolic link to a good file", func(t *testing.T, path string) {
			target := filepath.Join(t.TempDir(), "real.state")
			mustWrite(t, target, doc)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, []string{"symbolic link", "set state_file to the file itself"}},
		{"writable by others", func(t *testing.T, path string) {
			mustWrite(t, path, doc)
			mustChmod(t, path, 0o606)
		}, []string{"writable by group or others (mode 0606)", "chmod go-w PATH"}},
		{"writable by group", func(t *testing.T, path string) {
			mustWrite(t, path, doc)
			mustChmod(t, path, 0o620)
		}, []string{"(mode 0620)", "chmod go-w PATH"}},
		{"owned by another user", func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("giving a file to another user needs root")
			}
			mustWrite(t, path, doc)
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, []string{"owned by uid 65534", "chown 0 PATH"}},
		{"owned by another user and writable by all", func(t *testing.T, path string) {
			if os.Geteuid() != 0 {
				t.Skip("giving a file to another user needs root")
			}
			mustWrite(t, path, doc)
			if err := os.Chown(path, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			mustChmod(t, path, 0o666)
		}, []string{"owned by uid 65534", "(mode 0666)", "chown 0 PATH and chmod go-w PATH"}},
		{"named pipe", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
		}, []string{"a named pipe (FIFO), not a regular file"}},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, []string{"a directory, not a regular file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "lb.state")
			tc.make(t, path)
			err := readFileWithin(t, path, 10*time.Second)
			if err == nil {
				t.Fatalf("ReadFile trusted the state file (%s)", tc.name)
			}
			if !strings.Contains(err.Error(), "state file "+path+": ") {
				t.Errorf("the error does not name the file %s: %v", path, err)
			}
			for _, w := range tc.want {
				if w = strings.ReplaceAll(w, "PATH", path); !strings.Contains(err.Error(), w) {
					t.Errorf("the error lacks %q: %v", w, err)
				}
			}
		})
	}
	t.Run("written by WriteFile", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "lb.state")
		old := syscall.Umask(0) // WriteFile must not depend on the umask
		err := WriteFile(path, doc)
		syscall.Umask(old)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != 0o600 || int(st.Uid) != os.Geteuid() {
			t.Errorf("WriteFile made a file of mode %v owned by uid %d; want -rw------- owned by uid %d", fi.Mode(), st.Uid, os.Geteuid())
		}
		got, err := ReadFile(path)
		if err != nil || got.Generation != 41 {
			t.Fatalf("ReadFile of what WriteFile wrote: generation %d, %v", got.Generation, err)
		}
	})
}

// readFileWithin calls ReadFile, failing the test if it has not returned
// within d (opening a FIFO for reading waits for a writer).
func readFileWithin(t *testing.T, path string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := ReadFile(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		// Let the open return: a writer comes and goes.
		if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
			w.Close()
		}
		t.Fatalf("ReadFile(%s) still blocked after %v", path, d)
		return nil
	}
}

func mustWrite(t *testing.T, path string, d Doc) {
	t.Helper()
	if err := WriteFile(path, d); err != nil {
		t.Fatal(err)
	}
}

func mustChmod(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}
