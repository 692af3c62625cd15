// Package syslog sends log lines to syslog as RFC 5424 messages: to the
// local daemon's unix datagram socket (/dev/log) or to a collector over
// UDP. It is a zerolog.LevelWriter: each event is one message, its
// severity from the event's level.
package syslog

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Facilities by name, as syslog.conf names them.
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11,
	"local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}

// Facility returns the facility code of name, or an error that lists the
// names.
func Facility(name string) (int, error) {
	if f, ok := facilities[name]; ok {
		return f, nil
	}
	return 0, fmt.Errorf("unknown syslog facility %q: use daemon, user, or local0 to local7", name)
}

// ParseTarget splits a syslog target: a unix socket path ("/dev/log"), or
// "udp://host:port".
func ParseTarget(target string) (network, addr string, err error) {
	switch {
	case strings.HasPrefix(target, "udp://"):
		addr = strings.TrimPrefix(target, "udp://")
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return "", "", fmt.Errorf("syslog target %q: want udp://host:port: %v", target, err)
		}
		return "udp", addr, nil
	case strings.HasPrefix(target, "/"):
		return "unixgram", target, nil
	}
	return "", "", fmt.Errorf("syslog target %q: want a unix socket path such as /dev/log, or udp://host:port", target)
}

// Writer sends each write as one syslog message. Make it with Dial.
type Writer struct {
	network, addr string
	facility      int
	tag, host     string
	pid           int

	mu   sync.Mutex
	conn net.Conn
}

// Dial returns a Writer to target (see ParseTarget) with facility and tag
// (the APP-NAME). It connects now, so that a bad target fails the start.
func Dial(target string, facility int, tag string) (*Writer, error) {
	network, addr, err := ParseTarget(target)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "-"
	}
	w := &Writer{network: network, addr: addr, facility: facility, tag: tag, host: host, pid: os.Getpid()}
	if err := w.connect(); err != nil {
		return nil, fmt.Errorf("syslog %s: %w", target, err)
	}
	return w, nil
}

func (w *Writer) connect() error {
	c, err := net.DialTimeout(w.network, w.addr, 2*time.Second)
	if err != nil {
		return err
	}
	w.conn = c
	return nil
}

// severity maps zerolog's levels to syslog's.
func severity(l zerolog.Level) int {
	switch l {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return 7
	case zerolog.InfoLevel, zerolog.NoLevel:
		return 6
	case zerolog.WarnLevel:
		return 4
	case zerolog.ErrorLevel:
		return 3
	case zerolog.FatalLevel:
		return 2
	case zerolog.PanicLevel:
		return 1
	}
	return 5
}

// Write sends p as a notice.
func (w *Writer) Write(p []byte) (int, error) { return w.WriteLevel(zerolog.NoLevel, p) }

// WriteLevel sends p, one log line, as one message of the level's
// severity: RFC 5424, with the line (JSON) as the message.
func (w *Writer) WriteLevel(l zerolog.Level, p []byte) (int, error) {
	msg := strings.TrimRight(string(p), "\n")
	line := fmt.Sprintf("<%d>1 %s %s %s %d - - %s", w.facility*8+severity(l),
		time.Now().UTC().Format("2006-01-02T15:04:05.000000Z07:00"), w.host, w.tag, w.pid, msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	for try := 0; ; try++ {
		if w.conn == nil {
			if err := w.connect(); err != nil {
				return 0, err
			}
		}
		if _, err := w.conn.Write([]byte(line)); err != nil {
			w.conn.Close()
			w.conn = nil
			if try == 0 && !errors.Is(err, net.ErrClosed) {
				continue // the daemon restarted: connect again, once
			}
			return 0, err
		}
		return len(p), nil
	}
}

// Close closes the connection.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.conn == nil {
		return nil
	}
	err := w.conn.Close()
	w.conn = nil
	return err
}
