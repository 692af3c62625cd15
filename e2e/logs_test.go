package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestLogsForShippers: a daemon logs to syslog (a unix datagram socket,
// as /dev/log is) in RFC 5424, every line with the generation; access
// lines carry the query string, user agent, HTTP version and termination
// state; a frontend with log_format = "httplog" writes HAProxy's option
// httplog lines, without the query string when log_query is off.
func TestLogsForShippers(t *testing.T) {
	a := startHTTPBackend(t, "a")
	d := newDaemons(t, "")
	sockPath := filepath.Join(d.dir, "log")
	sl, err := net.ListenPacket("unixgram", sockPath)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	port2 := freePort(t)
	d.writeConfig(daemonConfigMode(d.dir, d.port, fmt.Sprintf("syslog = %q\nsyslog_facility = \"local3\"", sockPath), "http", "",
		serverLine("a", a.addr(), "")) + fmt.Sprintf(`
[[frontend]]
name = "web2"
bind = ["127.0.0.1:%d"]
default_backend = "app"
log_format = "httplog"
log_query = false
`, port2))
	d.mustLaunch()
	waitPort(t, d.port)
	c := &http.Client{Timeout: 5 * time.Second}
	for _, u := range []string{fmt.Sprintf("http://%s/p?token=s3cret", d.addr()), fmt.Sprintf("http://127.0.0.1:%d/p?token=s3cret", port2)} {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("User-Agent", "shipper-test/1.0")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}

	// Syslog: RFC 5424, local3 (19 * 8 + 6 = 158 for info), the JSON line.
	head := regexp.MustCompile(`^<(\d+)>1 \S+ \S+ lb \d+ - - (\{.*\})$`)
	var access, started string
	buf := make([]byte, 16384)
	for end := time.Now().Add(10 * time.Second); (access == "" || started == "") && time.Now().Before(end); {
		_ = sl.SetReadDeadline(end)
		n, _, err := sl.ReadFrom(buf)
		if err != nil {
			break
		}
		m := head.FindStringSubmatch(string(buf[:n]))
		if m == nil {
			t.Fatalf("syslog message %q is not RFC 5424 with a JSON line", buf[:n])
		}
		if !strings.Contains(m[2], `"generation":1`) {
			t.Errorf("syslog line without the generation: %s", m[2])
		}
		switch {
		case strings.Contains(m[2], `"message":"request"`):
			access = m[0]
		case strings.Contains(m[2], `"message":"lb started"`):
			started = m[0]
			if m[1] != "158" {
				t.Errorf("priority <%s>, want <158> (local3.info): %s", m[1], m[0])
			}
		}
	}
	for _, want := range []string{`"query":"token=s3cret"`, `"user_agent":"shipper-test/1.0"`, `"http":"1.1"`, `"term":"--"`, `"frontend":"web"`} {
		if !strings.Contains(access, want) {
			t.Errorf("access line in syslog lacks %s: %s", want, access)
		}
	}
	if started == "" {
		t.Errorf("no \"lb started\" line in syslog")
	}

	// The httplog line, in the log file.
	line := regexp.MustCompile(`(?m)^127\.0\.0\.1:\d+ \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d\.\d{3}\] web2 app/a \d+/0/\d+/\d+/\d+ 200 \d+ - - ---- \d+/\d+/\d+/\d+/0 0/0 "GET /p HTTP/1\.1"$`)
	for end := time.Now().Add(5 * time.Second); !line.MatchString(d.log()) && time.Now().Before(end); {
		time.Sleep(50 * time.Millisecond)
	}
	if !line.MatchString(d.log()) {
		t.Errorf("no httplog line for web2 in the log:\n%s", d.log())
	}
	if l := line.FindString(d.log()); strings.Contains(l, "s3cret") {
		t.Errorf("web2 has log_query = false, yet its line has the query string: %s", l)
	}
}

// TestAccessLogTLS: the access line of a request over TLS names the TLS
// version, the name the client asked for (SNI), and whether the
// handshake resumed a session.
func TestAccessLogTLS(t *testing.T) {
	d, cfg := tlsDaemons(t, "")
	d.mustLaunch()
	waitPort(t, d.port)
	cfg.ServerName = "127.0.0.1"
	tlsVisit(t, d.addr(), cfg)
	cfg2 := cfg.Clone()
	cfg2.ServerName, cfg2.InsecureSkipVerify = "lb.example", true
	cfg2.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if tlsVisit(t, d.addr(), cfg2) || !tlsVisit(t, d.addr(), cfg2) {
		t.Fatal("the second visit with a session cache did not resume, or the first did")
	}
	// No SNI for an IP address (RFC 6066): no sni field then.
	want := []string{`"http":"1.1","tls":"TLS 1.3","status":200`, `"tls":"TLS 1.3","sni":"lb.example"`,
		`"tls":"TLS 1.3","tls_resumed":true,"sni":"lb.example"`}
	has := func(log string) bool {
		for _, w := range want {
			if !strings.Contains(log, w) {
				return false
			}
		}
		return true
	}
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if log := d.log(); has(log) {
			if n := strings.Count(log, `"tls_resumed":true`); n != 1 {
				t.Errorf("%d access lines say the handshake resumed, want 1:\n%s", n, log)
			}
			return
		}
	}
	t.Errorf("the access lines lack one of %q:\n%s", want, d.log())
}

// TestDaemonSaysWhereItsLogsGo: a daemon with no log_file and no syslog
// (no /dev/log here, or syslog = "none") says on the launcher's stderr
// that its logs are lost from then on.
func TestDaemonSaysWhereItsLogsGo(t *testing.T) {
	a := startServer(t, "a")
	d := newDaemons(t, "")
	text := daemonConfig(d.dir, d.port, `syslog = "none"`, a)
	i := strings.Index(text, "log_file = ")
	j := i + strings.IndexByte(text[i:], '\n')
	d.writeConfig(text[:i] + text[j+1:])
	code, out := d.launch()
	if code != 0 {
		t.Fatalf("lb -D: exit %d\n%s", code, out)
	}
	if !strings.Contains(out, "this daemon's logs are discarded from now on") {
		t.Errorf("the launcher's output does not say the logs are lost:\n%s", out)
	}
}
