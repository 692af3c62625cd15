package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"lb/config"
	"lb/httpproxy"
	"lb/proxy"
	"lb/reload"
	"lb/syslog"
)

// logGeneration is the generation number every log line carries, once
// the generation knows it.
var logGeneration atomic.Int64

// newLogger returns lb's logger: JSON lines on w, or readable console output
// when w is a terminal, and to sys too when it is not nil. Every line
// carries the pid and, once it is known, the generation.
func newLogger(w io.Writer, sys *syslog.Writer, level string) (zerolog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	zerolog.DurationFieldUnit = time.Millisecond
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	if sys != nil {
		w = zerolog.MultiLevelWriter(w, sys)
	}
	hook := zerolog.HookFunc(func(e *zerolog.Event, _ zerolog.Level, _ string) {
		if n := logGeneration.Load(); n > 0 {
			e.Int64("generation", n)
		}
	})
	return zerolog.New(w).Level(lvl).Hook(hook).With().Timestamp().Int("pid", os.Getpid()).Logger(), nil
}

// defaultSyslog is where a daemon with no log file logs: the local
// syslog daemon's socket.
const defaultSyslog = "/dev/log"

// openSyslog connects to global.syslog: for a daemon (-D) with no log file
// whose stderr is not the journal, /dev/log by default when it is there;
// nil when lb logs to no syslog.
func openSyslog(g config.Global, daemon bool, logFile *os.File) (*syslog.Writer, error) {
	target := g.Syslog
	if target == "" && daemon && logFile == nil && !reload.StderrIsJournal() {
		if fi, err := os.Stat(defaultSyslog); err == nil && fi.Mode().Type() == os.ModeSocket {
			target = defaultSyslog
		}
	}
	if target == "" || target == "none" {
		return nil, nil
	}
	fac, err := syslog.Facility(g.SyslogFacility)
	if err != nil {
		return nil, err
	}
	return syslog.Dial(target, fac, g.SyslogTag)
}

// openLog opens global.log_file for appending; with no path it returns a
// nil file, and logs go to stderr. "/dev/stdout" and "/dev/stderr" are
// this process's own stdout and stderr, duplicated rather than opened
// again through /proc/self/fd, which fails on a socket (systemd's journal,
// some container log drivers). "/dev/null" discards the logs. Any other
// path must be a regular file, or
// not exist yet: a root lb must not append to whatever file a symbolic
// link planted there names, nor block on a FIFO.
func openLog(path string) (*os.File, error) {
	switch path {
	case "":
		return nil, nil
	case "/dev/stdout":
		return dupLog(path, 1)
	case "/dev/stderr":
		return dupLog(path, 2)
	case os.DevNull:
		// A device nobody can plant: logs are discarded.
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return nil, fmt.Errorf("log_file: %w", err)
		}
		return f, nil
	}
	// O_NONBLOCK keeps the open from waiting for a reader when path is a
	// FIFO; it changes nothing for a regular file.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0o640)
	if err != nil {
		return nil, logOpenError(path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log_file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, notRegularLog(path, fi.Mode())
	}
	return f, nil
}

// dupLog returns a duplicate of this process's descriptor fd, for
// log_file "/dev/stdout" or "/dev/stderr".
func dupLog(path string, fd int) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return nil, fmt.Errorf("log_file %s: lb's own file descriptor %d: %w", path, fd, err)
	}
	return os.NewFile(uintptr(nfd), path), nil
}

// logOpenError explains why log_file could not be opened.
func logOpenError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP):
		// Or too many links in the directories above it.
		target, lerr := os.Readlink(path)
		if lerr != nil {
			break
		}
		return fmt.Errorf("log_file %s is a symbolic link (to %q): lb does not follow a symbolic link there, "+
			"so that whoever can write %s cannot make lb append to another file; set log_file to the file itself, "+
			"or replace the link with a regular file (\"/dev/stdout\" and \"/dev/stderr\" are allowed: lb writes to its own)",
			path, target, filepath.Dir(path))
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.ENXIO):
		// A directory, or a FIFO with no reader or a socket.
		if fi, lerr := os.Lstat(path); lerr == nil && !fi.Mode().IsRegular() {
			return notRegularLog(path, fi.Mode())
		}
	}
	return fmt.Errorf("log_file: %w", err)
}

// notRegularLog refuses a log_file that is not a regular file.
func notRegularLog(path string, m os.FileMode) error {
	return fmt.Errorf("log_file %s is %s, not a regular file: lb appends its logs to a regular file only "+
		"(or to its own stdout or stderr: log_file = \"/dev/stdout\" or \"/dev/stderr\"); set log_file to a file's path",
		path, fileType(m))
}

// fileType names the type of a file that is not a regular file.
func fileType(m os.FileMode) string {
	switch m.Type() {
	case os.ModeDir:
		return "a directory"
	case os.ModeNamedPipe:
		return "a named pipe (FIFO)"
	}
	return fmt.Sprintf("a device, socket or other special file (mode %v)", m)
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// accessLines writes the access log lines of frontends with log_format =
// "httplog": each line as it is, to the log output and to syslog as the
// message.
type accessLines struct {
	out io.Writer
	sys *syslog.Writer
}

func (a accessLines) Write(p []byte) (int, error) {
	n, err := a.out.Write(p)
	if a.sys != nil {
		_, _ = a.sys.WriteLevel(zerolog.InfoLevel, p)
	}
	return n, err
}

// useHTTPLog gives the frontends with log_format = "httplog" their
// access log output.
func useHTTPLog(cfg *config.Config, p *proxy.Proxy, out io.Writer, sys *syslog.Writer) {
	for i, fc := range cfg.Frontends {
		if fc.LogFormat != config.LogFormatHTTPLog || i >= len(p.Frontends) {
			continue
		}
		if h, ok := p.Frontends[i].Handler.(*httpproxy.Frontend); ok {
			h.HTTPLog = accessLines{out: out, sys: sys}
		}
	}
}
