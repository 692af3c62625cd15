// Package admin serves lb's admin socket: a unix stream socket, mode 0600,
// that answers one text command per connection, like HAProxy's stats
// socket. Commands are registered by the packages that own the state they
// show; this package only listens, reads the command and dispatches it.
//
// A new generation takes the socket path over from the old one: it listens
// in a private directory of its own (mode 0700, named at random) next to
// the path and renames the socket into place, so the path is never
// missing, no one else can connect before it serves, and no one can block
// the start by planting a file at a name lb would use. An exiting
// generation removes the path only if it still names its own socket.
package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Request is one command received on the admin socket.
type Request struct {
	// Args are the words after the command's own words.
	Args []string
	// Conn is the client connection, for commands that pass descriptors.
	Conn *net.UnixConn
	// Body reads what the client sent after the command's line, for
	// commands that take a document.
	Body io.Reader
}

// Handler answers one command, writing its reply to w. An error is sent to
// the client as a one-line reply.
type Handler interface {
	ServeAdmin(w io.Writer, r *Request) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w io.Writer, r *Request) error

// ServeAdmin calls f.
func (f HandlerFunc) ServeAdmin(w io.Writer, r *Request) error { return f(w, r) }

// ioTimeout bounds reading a command and writing its reply.
const ioTimeout = 5 * time.Second

// maxLine bounds the length of a command.
const maxLine = 4096

// Server dispatches commands to handlers. Its zero value has no commands;
// add them with Handle (the first one adds "help") before Serve.
type Server struct {
	mu       sync.RWMutex
	commands map[string]command
}

// command is a registered command: its handler, and what "help" says of it.
type command struct {
	h   Handler
	doc string
}

// Handle registers h for a command of one or more words, like "show info",
// with the one-line description that "help" shows, its arguments first,
// like "[all]: clear the counters". Commands named with a leading "_" are
// internal: "help" leaves them out.
func (s *Server) Handle(name, doc string, h Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.commands == nil {
		s.commands = map[string]command{"help": {h: HandlerFunc(s.help), doc: ": list the commands"}}
	}
	s.commands[strings.Join(strings.Fields(name), " ")] = command{h: h, doc: doc}
}

// visible returns the names of the commands but the internal ones,
// sorted; s.mu is held.
func (s *Server) visible() []string {
	var names []string
	for name := range s.commands {
		if !strings.HasPrefix(name, "_") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// help answers "help": every command but the internal ones, with its
// description.
func (s *Server) help(w io.Writer, _ *Request) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, name := range s.visible() {
		fmt.Fprintln(w, strings.TrimSpace(name+" "+s.commands[name].doc))
	}
	return nil
}

// Serve answers connections on ln until ctx is done, then closes ln and
// waits for the replies under way.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go s.serveConn(c, &wg)
	}
}

// serveConn reads one command and writes its reply.
func (s *Server) serveConn(c *net.UnixConn, wg *sync.WaitGroup) {
	defer wg.Done()
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	br := bufio.NewReaderSize(c, maxLine)
	line, err := br.ReadSlice('\n')
	switch {
	case err == bufio.ErrBufferFull:
		fmt.Fprintf(c, "error: the command is longer than %d bytes\n", maxLine)
		return
	case err != nil && (err != io.EOF || len(line) == 0):
		fmt.Fprintf(c, "error: no command received: send one command and a newline\n")
		return
	}
	w := bufio.NewWriter(c)
	defer w.Flush()
	s.dispatch(w, strings.Fields(string(line)), c, br)
}

// dispatch finds the handler of the longest command that words start with.
func (s *Server) dispatch(w io.Writer, words []string, c *net.UnixConn, body io.Reader) {
	s.mu.RLock()
	var h Handler
	n := 0
	for i := len(words); i > 0; i-- {
		if cmd, ok := s.commands[strings.Join(words[:i], " ")]; ok {
			h, n = cmd.h, i
			break
		}
	}
	known := s.visible()
	s.mu.RUnlock()
	if h == nil {
		fmt.Fprintf(w, "error: unknown command %q: commands are %s\n", strings.Join(words, " "), strings.Join(known, ", "))
		return
	}
	defer func() {
		if p := recover(); p != nil {
			fmt.Fprintf(w, "error: command %q failed: %v\n", strings.Join(words[:n], " "), p)
		}
	}()
	if err := h.ServeAdmin(w, &Request{Args: words[n:], Conn: c, Body: body}); err != nil {
		fmt.Fprintf(w, "error: %v\n", err)
	}
}

// maxSocketPath is the longest path a unix socket address holds (sun_path
// is 108 bytes on Linux, with a terminating NUL).
const maxSocketPath = 107

// Listen creates the admin socket for path, mode 0600, in a new directory
// next to it: mode 0700, with a random name (os.MkdirTemp, which tries
// another name when one is taken). Publish moves the socket to path.
func Listen(path string) (*Socket, error) {
	dir, err := os.MkdirTemp(filepath.Dir(path), ".lb-admin-*")
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: cannot create a temporary directory next to it (lb's user must be able to write %s): %w",
			path, filepath.Dir(path), err)
	}
	tmp := filepath.Join(dir, "s")
	if len(tmp) > maxSocketPath {
		os.Remove(dir)
		return nil, fmt.Errorf("admin socket %s: lb first creates it as %s, which is %d bytes long, and a unix socket's path holds at most %d: choose a shorter admin_socket path",
			path, tmp, len(tmp), maxSocketPath)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		os.Remove(dir)
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(false)
	// The directory kept everyone else out until now; the socket keeps
	// them out once it is renamed into place.
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		os.Remove(dir)
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return &Socket{Listener: ln, path: path, dir: dir, tmp: tmp}, nil
}

// Socket is an admin socket and the path it serves.
type Socket struct {
	Listener *net.UnixListener
	path     string
	dir      string // the private directory, until Publish removes it
	tmp      string // the socket in dir
	ino      uint64
}

// Path returns the path the socket serves once published.
func (s *Socket) Path() string { return s.path }

// Publish renames the socket into its path, replacing an older
// generation's socket there, and removes the private directory.
func (s *Socket) Publish() error {
	if err := os.Rename(s.tmp, s.path); err != nil {
		return fmt.Errorf("admin socket %s: %w", s.path, err)
	}
	s.removeDir()
	if fi, err := os.Stat(s.path); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			s.ino = st.Ino
		}
	}
	return nil
}

// removeDir removes the private directory and the socket still in it.
func (s *Socket) removeDir() {
	if s.dir == "" {
		return
	}
	_ = os.Remove(s.tmp)
	_ = os.Remove(s.dir)
	s.dir = ""
}

// Close closes the socket, removes the private directory if Publish did
// not, and removes the path if the path still names this socket (a newer
// generation may have taken it over).
func (s *Socket) Close() error {
	err := s.Listener.Close()
	s.removeDir()
	if fi, statErr := os.Stat(s.path); statErr == nil && s.ino != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Ino == s.ino {
			_ = os.Remove(s.path)
		}
	}
	return err
}

// Dial connects to the admin socket at path.
func Dial(path string, timeout time.Duration) (*net.UnixConn, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, err
	}
	uc := c.(*net.UnixConn)
	_ = uc.SetDeadline(time.Now().Add(timeout))
	return uc, nil
}

// Published reports whether the path names this socket: Publish renamed
// it there and no newer generation has taken the path over since.
func (s *Socket) Published() bool {
	fi, err := os.Stat(s.path)
	if err != nil || s.ino == 0 {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Ino == s.ino
}
