package e2e

import (
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
