package state

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeInfo is a file's metadata as fstat gives it.
type fakeInfo struct {
	mode fs.FileMode
	uid  uint32
}

func (f fakeInfo) Name() string       { return "lb.state" }
func (f fakeInfo) Size() int64        { return 0 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return f.mode.IsDir() }
func (f fakeInfo) Sys() any           { return &syscall.Stat_t{Uid: f.uid} }

// Which owners and modes lb trusts, for an lb that runs as root and one
// that runs as uid 1000.
func TestCheckTrusted(t *testing.T) {
	for _, tc := range []struct {
		euid  int
		info  fakeInfo
		trust bool
	}{
		{0, fakeInfo{0o600, 0}, true},
		{0, fakeInfo{0o644, 0}, true},
		{0, fakeInfo{0o640, 1000}, false},
		{0, fakeInfo{0o664, 0}, false},
		{0, fakeInfo{0o602, 0}, false},
		{1000, fakeInfo{0o600, 1000}, true},
		{1000, fakeInfo{0o644, 0}, true}, // root's file, like sshd
		{1000, fakeInfo{0o600, 1001}, false},
		{1000, fakeInfo{0o660, 1000}, false},
		{1000, fakeInfo{fs.ModeDir | 0o700, 1000}, false},
		{1000, fakeInfo{fs.ModeNamedPipe | 0o600, 1000}, false},
	} {
		err := checkTrusted("/var/lib/lb/lb.state", tc.info, tc.euid)
		if tc.trust != (err == nil) {
			t.Errorf("lb as uid %d, file of uid %d with mode %v: error %v, want trusted %v", tc.euid, tc.info.uid, tc.info.mode, err, tc.trust)
		}
		if err != nil && !errors.Is(err, ErrUntrusted) {
			t.Errorf("lb as uid %d, file of uid %d with mode %v: %v does not wrap ErrUntrusted", tc.euid, tc.info.uid, tc.info.mode, err)
		}
	}
}

// ReadFile's refusals wrap ErrUntrusted, so that lb logs them as warnings;
// a missing file does not.
func TestReadFileUntrustedIsMarked(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.state")
	mustWrite(t, good, New(3, nil))
	link := filepath.Join(dir, "link.state")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(dir, "loose.state")
	mustWrite(t, loose, New(3, nil))
	mustChmod(t, loose, 0o666)
	for _, path := range []string{link, loose, dir} {
		if _, err := ReadFile(path); !errors.Is(err, ErrUntrusted) {
			t.Errorf("ReadFile(%s): %v, want an error wrapping ErrUntrusted", path, err)
		}
	}
	_, err := ReadFile(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "state file") {
		t.Errorf("ReadFile of a missing file: %v, want a not-exist error that is not ErrUntrusted", err)
	}
}

// A unix socket at the path cannot even be opened: it is refused as not a
// regular file, not reported as a missing one.
func TestReadFileRefusesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lb.state")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := ReadFile(path); !errors.Is(err, ErrUntrusted) || !strings.Contains(err.Error(), "a unix socket, not a regular file") {
		t.Errorf("ReadFile of a socket: %v", err)
	}
}
