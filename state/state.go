// Package state is what one lb generation knows about its servers and hands
// to the next one: each server's health (and how far through rise or fall
// it is), its admin state and its runtime weight. The old generation sends
// it over its admin socket; a state file, kept current by the serving
// generation, covers a next generation that cannot reach it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"lb/stats"
	"lb/table"
)

// version is the format's version; a document of another is refused.
const version = 1

// Server is what is known of one server.
type Server struct {
	Backend string `json:"backend"`
	Server  string `json:"server"`
	// Address (resolved, "ip:port") and ConfigWeight are what the
	// configuration gave the server when the state was taken: a
	// configuration that changes them wins over the saved state.
	Address      string `json:"address"`
	ConfigWeight int    `json:"config_weight"`
	// Checked says whether the server had health checks; Up and Count are
	// their outcome.
	Checked bool `json:"checked"`
	Up      bool `json:"up"`
	Count   int  `json:"count"`
	// Changed is when the health last changed, as far as any generation
	// saw; zero when none did.
	Changed time.Time `json:"changed,omitzero"`
	// Admin is "ready", "drain" or "maint"; Weight is the runtime weight.
	Admin  string `json:"admin"`
	Weight int    `json:"weight"`
}

// Doc is the state of every server of one generation.
type Doc struct {
	Version    int `json:"version"`
	Generation int `json:"generation"`
	// Pid is the process of the generation that took the state: over the
	// admin socket, the generation that serves.
	Pid     int       `json:"pid,omitempty"`
	Saved   time.Time `json:"saved"`
	Servers []Server  `json:"servers"`
	// Live holds, by name, what only a live generation hands to the next
	// one over the admin socket: secrets such as the TLS session ticket
	// keys ("tls_ticket_keys"), and state that plugs in later. WriteFile
	// leaves it out of the state file.
	Live map[string]json.RawMessage `json:"live,omitempty"`
	// Counters are the traffic counters of every generation so far, so
	// that no reload or restart resets them.
	Counters *stats.Carried `json:"counters,omitempty"`
	// Tables are the stick tables' entries.
	Tables []table.Snapshot `json:"tables,omitempty"`
}

// New returns a document of the current format.
func New(generation int, servers []Server) Doc {
	return Doc{Version: version, Generation: generation, Saved: time.Now().UTC(), Servers: servers}
}

// Encode writes d as JSON.
func Encode(w io.Writer, d Doc) error {
	return json.NewEncoder(w).Encode(d)
}

// Decode reads a document and checks its version.
func Decode(r io.Reader) (Doc, error) {
	var d Doc
	if err := json.NewDecoder(r).Decode(&d); err != nil {
		return Doc{}, fmt.Errorf("server state: %w", err)
	}
	if d.Version != version {
		return Doc{}, fmt.Errorf("server state: version %d, this lb reads version %d", d.Version, version)
	}
	return d, nil
}

// WriteFile writes d, without d.Live, to path atomically: to a temporary
// file in the same directory, mode 0600, which is then renamed over path.
// The file is lb's user's and writable by no one else, so ReadFile trusts
// it.
func WriteFile(path string, d Doc) error {
	d.Live = nil
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := Encode(f, d); err != nil {
		f.Close()
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// ErrUntrusted is wrapped by ReadFile's error when the state file is there
// but lb does not trust it; the error says why and how to fix it.
var ErrUntrusted = errors.New("not trusted")

// ReadFile reads the document at path, if lb can trust the file: it must
// be a regular file (not a symbolic link, which ReadFile does not follow),
// owned by lb's effective user or by root, and not writable by group or
// others, as sshd wants of its key files. Otherwise whoever could write it
// could set lb's servers' admin states and weights; the error then wraps
// ErrUntrusted. The checks are made on the open file, so the file checked
// is the file read.
func ReadFile(path string) (Doc, error) {
	// O_NONBLOCK only keeps the open from waiting for a writer when path
	// is a FIFO; it changes nothing for a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) && isSymlink(path) {
			return Doc{}, fmt.Errorf("state file %s: %w: it is a symbolic link, which lb does not follow there "+
				"(whoever can write %s could point it anywhere); fix: set state_file to the file itself, or remove the link",
				path, ErrUntrusted, filepath.Dir(path))
		}
		if fi, lerr := os.Lstat(path); errors.Is(err, syscall.ENXIO) && lerr == nil && !fi.Mode().IsRegular() {
			return Doc{}, checkTrusted(path, fi, os.Geteuid()) // a unix socket
		}
		return Doc{}, fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Doc{}, fmt.Errorf("state file %s: %w", path, err)
	}
	if err := checkTrusted(path, fi, os.Geteuid()); err != nil {
		return Doc{}, err
	}
	d, err := Decode(f)
	if err != nil {
		return Doc{}, fmt.Errorf("state file %s: %w", path, err)
	}
	return d, nil
}

// isSymlink reports whether path is a symbolic link: O_NOFOLLOW's ELOOP
// can also mean too many links in the directories above it.
func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode().Type() == fs.ModeSymlink
}

// checkTrusted says why lb, running as euid, does not trust the state
// file at path whose open file is fi, or returns nil.
func checkTrusted(path string, fi fs.FileInfo, euid int) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("state file %s: %w: it is %s, not a regular file; fix: remove it, and let lb write the file when it stops",
			path, ErrUntrusted, describeType(fi.Mode()))
	}
	var problems, fixes []string
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != euid && st.Uid != 0 {
		problems = append(problems, fmt.Sprintf("it is owned by uid %d, while lb runs as uid %d and trusts only its own files and root's", st.Uid, euid))
		fixes = append(fixes, fmt.Sprintf("chown %d %s", euid, path))
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		problems = append(problems, fmt.Sprintf("it is writable by group or others (mode %04o)", perm))
		fixes = append(fixes, "chmod go-w "+path)
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("state file %s: %w: %s; fix: %s, or remove the file", path, ErrUntrusted,
		strings.Join(problems, ", and "), strings.Join(fixes, " and "))
}

// describeType names the type of a file that is not a regular file.
func describeType(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a unix socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return "a special file (" + m.Type().String() + ")"
}

// Index finds servers by backend and name.
type Index map[[2]string]Server

// Index returns d's servers by backend and name.
func (d Doc) Index() Index {
	ix := make(Index, len(d.Servers))
	for _, s := range d.Servers {
		ix[[2]string{s.Backend, s.Server}] = s
	}
	return ix
}

// Lookup returns the saved state of a server.
func (ix Index) Lookup(backend, server string) (Server, bool) {
	s, ok := ix[[2]string{backend, server}]
	return s, ok
}
