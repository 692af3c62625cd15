package syslog

import (
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// read returns the next datagram on c.
func read(t *testing.T, c net.PacketConn) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 8192)
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

var rfc5424 = regexp.MustCompile(`^<(\d+)>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ lb \d+ - - (.*)$`)

func TestUnixAndUDP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	ux, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ux.Close()
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	local0, _ := Facility("local0")
	for _, tc := range []struct {
		target string
		conn   net.PacketConn
	}{{path, ux}, {"udp://" + udp.LocalAddr().String(), udp}} {
		w, err := Dial(tc.target, local0, "lb")
		if err != nil {
			t.Fatal(err)
		}
		log := zerolog.New(w)
		log.Warn().Int("generation", 3).Msg("hello")
		m := rfc5424.FindStringSubmatch(read(t, tc.conn))
		if m == nil || m[1] != "132" || !strings.Contains(m[2], `"generation":3`) || !strings.Contains(m[2], `"message":"hello"`) {
			t.Fatalf("%s: message %q, want <132> (local0.warning) and the JSON line", tc.target, m)
		}
		w.Close()
	}
}

func TestBadTargets(t *testing.T) {
	for _, target := range []string{"dev/log", "udp://nohostport", "tcp://h:514"} {
		if _, _, err := ParseTarget(target); err == nil {
			t.Errorf("ParseTarget(%q): no error", target)
		}
	}
	if _, err := Dial(filepath.Join(t.TempDir(), "none"), 3, "lb"); err == nil {
		t.Errorf("Dial to a missing socket: no error")
	}
	if _, err := Facility("local9"); err == nil {
		t.Errorf("Facility(local9): no error")
	}
}
