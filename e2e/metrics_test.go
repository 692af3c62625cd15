package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// statsTable is a [stats] table listening on port.
func statsTable(port int, extra string) string {
	return fmt.Sprintf("\n\n[stats]\nbind = \"127.0.0.1:%d\"\n%s\n", port, extra)
}

// scrape reads /metrics at addr: every sample by its series (name and
// labels, as written), and the text.
func scrape(c *http.Client, addr string) (map[string]float64, string, error) {
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	if resp.StatusCode != 200 {
		return nil, "", fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(body)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			return nil, "", fmt.Errorf("line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out, string(body), nil
}

// isCounterSeries says whether a series only grows.
func isCounterSeries(series string) bool {
	name := series
	if i := strings.IndexByte(series, '{'); i >= 0 {
		name = series[:i]
	}
	if !strings.HasPrefix(name, "lb_") {
		return false
	}
	return strings.HasSuffix(name, "_total") || strings.HasSuffix(name, "_count") ||
		strings.HasSuffix(name, "_sum") || strings.HasSuffix(name, "_bucket")
}

// TestMetricsAcrossReloads scrapes /metrics every 100 ms while HTTP clients
// run and lb reloads 50 times on a fixed cadence: no scrape fails, no
// counter ever goes backwards, and once the old generations are gone the
// request counter equals the requests the clients made, exactly; promtool
// finds the exposition valid.
func TestMetricsAcrossReloads(t *testing.T) {
	promtool := lookTool(t, "promtool", "apt-get install prometheus")
	a, b := startHTTPBackend(t, "a"), startHTTPBackend(t, "b")
	d := newDaemons(t, "")
	statsPort := freePort(t)
	statsAddr := fmt.Sprintf("127.0.0.1:%d", statsPort)
	backend := serverLine("a", a.addr(), "") + "\n" + serverLine("b", b.addr(), "")
	d.writeConfig(daemonConfigMode(d.dir, d.port, "", "http", "", backend) + statsTable(statsPort, ""))
	d.mustLaunch()
	waitPort(t, d.port)
	waitPort(t, statsPort)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var made, failed atomic.Int64
	var firstErr atomic.Value
	var clients sync.WaitGroup
	for i := range 4 {
		clients.Add(1)
		go func() {
			defer clients.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for n := 0; ctx.Err() == nil && n < 100000; n++ {
				resp, err := c.Get(fmt.Sprintf("http://%s/client/%d", d.addr(), i))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				made.Add(1)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}

	var scrapes, scrapeFails atomic.Int64
	var backwards []string
	var mu sync.Mutex
	var scraper sync.WaitGroup
	scraper.Add(1)
	go func() {
		defer scraper.Done()
		c := &http.Client{Timeout: 5 * time.Second}
		last := map[string]float64{}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			m, _, err := scrape(c, statsAddr)
			scrapes.Add(1)
			mu.Lock()
			if err != nil {
				scrapeFails.Add(1)
				backwards = append(backwards, "scrape failed: "+err.Error())
			}
			for k, v := range m {
				if isCounterSeries(k) && v < last[k] {
					backwards = append(backwards, fmt.Sprintf("%s went from %v to %v", k, last[k], v))
				}
				last[k] = v
			}
			mu.Unlock()
		}
	}()

	const reloads = 50
	deadline := guardDeadline(t, 3*time.Minute)
	results := make(chan cmdResult, reloads)
	tick := time.NewTicker(150 * time.Millisecond)
	for i := range reloads {
		<-tick.C
		if time.Now().After(deadline) {
			t.Fatalf("only %d reloads before the test's guard ran out", i)
		}
		args := []string{lbBin, "-f", d.cfg, "-p", d.pidFile, "-D", "-sf"}
		if old := d.pid(); old != 0 {
			args = append(args, strconv.Itoa(old))
		}
		go func() { results <- runCmd(t, 2*time.Minute, nil, args...) }()
	}
	tick.Stop()
	for range reloads {
		if r := <-results; r.code != 0 {
			t.Errorf("a reload failed: %s", r)
		}
	}
	time.Sleep(300 * time.Millisecond)
	cancel()
	clients.Wait()
	scraper.Wait()
	for _, p := range logPids(t, d.log()) {
		d.seen[p] = true
	}

	// Every old generation ends; the newest then holds their last counts.
	c := &http.Client{Timeout: 5 * time.Second}
	var m map[string]float64
	var text string
	want := float64(made.Load())
	for end := time.Now().Add(20 * time.Second); ; {
		var err error
		m, text, err = scrape(c, statsAddr)
		if err != nil {
			t.Fatal(err)
		}
		if m["lb_draining_generations"] == 0 && m[`lb_frontend_http_requests_total{frontend="web"}`] == want {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("after the old generations ended: lb_draining_generations %v, lb_frontend_http_requests_total %v; the clients made %v requests",
				m["lb_draining_generations"], m[`lb_frontend_http_requests_total{frontend="web"}`], want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d requests (%d failed), %d scrapes, %d reloads", made.Load(), failed.Load(), scrapes.Load(), reloads)
	if f := failed.Load(); f != 0 {
		t.Errorf("%d requests failed; first: %v", f, firstErr.Load())
	}
	if len(backwards) > 0 {
		t.Errorf("%d scrapes failed or went backwards; first: %v", len(backwards), backwards[:min(5, len(backwards))])
	}
	if scrapes.Load() < 50 {
		t.Errorf("only %d scrapes", scrapes.Load())
	}
	if got := m["lb_reloads_total"]; got != reloads {
		t.Errorf("lb_reloads_total %v, want %d", got, reloads)
	}
	var byServer float64
	for _, s := range []string{"a", "b"} {
		byServer += m[fmt.Sprintf(`lb_server_http_responses_total{backend="app",code="2xx",server=%q}`, s)]
	}
	if byServer != want {
		t.Errorf("the servers' 2xx responses add up to %v, want %v", byServer, want)
	}
	if got := m[`lb_frontend_connections_total{frontend="web"}`]; got < 4 {
		t.Errorf("lb_frontend_connections_total %v, want at least the 4 clients' connections", got)
	}

	// OpenMetrics when the scraper asks for it.
	req, _ := http.NewRequest("GET", "http://"+statsAddr+"/metrics", nil)
	req.Header.Set("Accept", "application/openmetrics-text;version=1.0.0,text/plain;q=0.5")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	om, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(string(om), "# EOF\n") {
		t.Errorf("asked for OpenMetrics: Content-Type %q, %d bytes ending %q", ct, len(om), om[max(0, len(om)-20):])
	}

	file := filepath.Join(t.TempDir(), "metrics.txt")
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sh", "-c", promtool+" check metrics < "+file).CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestAdminCounters: show stat counts HTTP servers' bytes and responses,
// help lists the commands, clear counters all zeroes the counters of
// every generation, show info counts the reloads, and the counters carry
// on from zero across a reload.
func TestAdminCounters(t *testing.T) {
	a := startHTTPBackend(t, "a")
	d := newDaemons(t, "")
	statsPort := freePort(t)
	statsAddr := fmt.Sprintf("127.0.0.1:%d", statsPort)
	d.writeConfig(daemonConfigMode(d.dir, d.port, "", "http", "", serverLine("a", a.addr(), "")) + statsTable(statsPort, ""))
	d.mustLaunch()
	waitPort(t, d.port)
	c := &http.Client{Timeout: 5 * time.Second}
	get := func(n int) {
		t.Helper()
		for range n {
			resp, err := c.Get("http://" + d.addr() + "/x")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	get(5)
	// A client has its whole response a moment before lb counts it: the
	// count is awaited (a busy machine widens that moment).
	var stat string
	var f []string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		stat = adminQuery(t, d.adminSock, "show stat")
		f = strings.Fields(strings.Split(stat, "\n")[1])
		if len(f) == 14 && f[10] == "5" || time.Now().After(deadline) {
			break
		}
	}
	// backend server health admin active max total errors bytes_in bytes_out 2xx 4xx 5xx response_errors
	if len(f) != 14 || f[6] != "5" || f[9] == "0" || f[10] != "5" {
		t.Fatalf("show stat after 5 requests:\n%s", stat)
	}
	help := adminQuery(t, d.adminSock, "help")
	for _, cmd := range []string{"help", "show info", "show stat", "show servers state", "set server", "clear counters"} {
		if !strings.Contains(help, "\n"+cmd) && !strings.HasPrefix(help, cmd) {
			t.Errorf("help does not list %q:\n%s", cmd, help)
		}
	}
	if strings.Contains(help, "_getstate") {
		t.Errorf("help lists the internal commands:\n%s", help)
	}
	if code, out, _ := runLB(t, "admin", "-s", d.adminSock, "show", "info"); code != 0 || !strings.Contains(out, "generation: 1\n") {
		t.Errorf("lb admin show info: exit %d\n%s", code, out)
	}
	if code, out, _ := runLB(t, "admin", "-s", d.adminSock, "help"); code != 0 || !strings.Contains(out, "show sess") {
		t.Errorf("lb admin help: exit %d\n%s", code, out)
	}
	if code, out, _ := runLB(t, "admin", "-s", d.adminSock, "show", "nothing"); code != 1 || !strings.Contains(out, "error: unknown command") {
		t.Errorf("lb admin show nothing: exit %d, want 1\n%s", code, out)
	}

	d.mustLaunch()
	waitPort(t, statsPort)
	get(3)
	if info := adminQuery(t, d.adminSock, "show info"); !strings.Contains(info, "\nreloads: 1\n") {
		t.Errorf("show info after one reload:\n%s", info)
	}
	key := `lb_frontend_http_requests_total{frontend="web"}`
	waitMetric := func(want float64) {
		t.Helper()
		var m map[string]float64
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			var err error
			if m, _, err = scrape(c, statsAddr); err == nil && m[key] == want {
				return
			}
		}
		t.Fatalf("%s is %v, want %v", key, m[key], want)
	}
	waitMetric(8)
	if got := adminQuery(t, d.adminSock, "clear counters all"); got != "cleared every counter\n" {
		t.Fatalf("clear counters all: %q", got)
	}
	waitMetric(0)
	get(2)
	d.mustLaunch()
	get(1)
	waitMetric(3)
}

// TestShowSess: a TCP connection in flight shows with its client, server
// and bytes; it is gone once closed.
func TestShowSess(t *testing.T) {
	a := startServer(t, "a")
	d := newDaemons(t, "", a)
	d.mustLaunch()
	waitPort(t, d.port)
	name, c := holdConn(t, d.addr())
	defer c.Close()
	local := c.LocalAddr().String()
	if name != "a" {
		t.Fatalf("answered by %q", name)
	}
	var sess string
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		sess = adminQuery(t, d.adminSock, "show sess")
		if strings.Contains(sess, "web "+local+" a ") {
			break
		}
	}
	if !strings.HasPrefix(sess, "# frontend client server age bytes_in bytes_out\n") || !strings.Contains(sess, "web "+local+" a ") {
		t.Fatalf("show sess with %s in flight:\n%s", local, sess)
	}
	c.Close()
	for end := time.Now().Add(5 * time.Second); strings.Contains(sess, local) && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		sess = adminQuery(t, d.adminSock, "show sess")
	}
	if strings.Contains(sess, local) {
		t.Fatalf("show sess after the close:\n%s", sess)
	}
}

// TestServerDownMetric: a server whose checks fail shows lb_server_up 0
// as soon as lb takes it down, and lb_server_up 1 again when it is back;
// the metric and show servers state never disagree for long.
func TestServerDownMetric(t *testing.T) {
	a, b := startChecked(t, "a"), startChecked(t, "b")
	d := newDaemons(t, "")
	statsPort := freePort(t)
	statsAddr := fmt.Sprintf("127.0.0.1:%d", statsPort)
	d.writeConfig(healthConfig(d, "", "", a, b) + statsTable(statsPort, ""))
	d.mustLaunch()
	waitPort(t, statsPort)
	c := &http.Client{Timeout: 5 * time.Second}
	up := func(server string) float64 {
		t.Helper()
		m, _, err := scrape(c, statsAddr)
		if err != nil {
			t.Fatal(err)
		}
		v, ok := m[fmt.Sprintf(`lb_server_up{backend="app",server=%q}`, server)]
		if !ok {
			t.Fatalf("no lb_server_up for %s", server)
		}
		return v
	}
	if up("a") != 1 || up("b") != 1 {
		t.Fatalf("lb_server_up at start: a %v, b %v", up("a"), up("b"))
	}
	b.checkDown()
	// Checks every 100ms, fall = 2: down within about 200ms; the wide
	// bound is for a busy machine.
	start := time.Now()
	for up("b") != 0 {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("lb_server_up for b still 1 after 10s; show servers state:\n%s", adminQuery(t, d.adminSock, "show servers state"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("lb_server_up 0 %v after the check port closed", time.Since(start).Round(time.Millisecond))
	if f := serverState(t, d, "b"); f[3] != "down" {
		t.Errorf("lb_server_up is 0 but show servers state says %v", f)
	}
	if up("a") != 1 {
		t.Errorf("a went down too")
	}
	b.checkUp()
	for start := time.Now(); up("b") != 1; time.Sleep(20 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("lb_server_up for b still 0 10s after its check came back")
		}
	}
}

// TestStatsAllowList: a client outside stats.allow gets 403, one inside
// the metrics.
func TestStatsAllowList(t *testing.T) {
	a := startServer(t, "a")
	for _, tc := range []struct {
		allow string
		want  int
	}{{`["10.0.0.0/8"]`, 403}, {`["10.0.0.0/8", "127.0.0.0/8"]`, 200}} {
		d := newDaemons(t, "", a)
		statsPort := freePort(t)
		d.writeConfig(daemonConfig(d.dir, d.port, "", a) + statsTable(statsPort, "allow = "+tc.allow))
		d.mustLaunch()
		waitPort(t, statsPort)
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", statsPort))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("allow = %s: status %d for 127.0.0.1, want %d", tc.allow, resp.StatusCode, tc.want)
		}
		d.stopAll()
	}
}

// TestCountersSurviveRestart: with state_file, a stop and a start carry
// the counters on.
func TestCountersSurviveRestart(t *testing.T) {
	a := startHTTPBackend(t, "a")
	d := newDaemons(t, "")
	statsPort := freePort(t)
	statsAddr := fmt.Sprintf("127.0.0.1:%d", statsPort)
	global := fmt.Sprintf("state_file = %q", filepath.Join(d.dir, "lb.state"))
	d.writeConfig(daemonConfigMode(d.dir, d.port, global, "http", "", serverLine("a", a.addr(), "")) + statsTable(statsPort, ""))
	c := &http.Client{Timeout: 5 * time.Second}
	key := `lb_frontend_http_requests_total{frontend="web"}`
	total := 0
	for run := range 3 {
		d.mustLaunch()
		waitPort(t, statsPort)
		for range 4 {
			resp, err := c.Get("http://" + d.addr() + "/")
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			total++
		}
		// lb counts a request at its end, once the response is out: the
		// client may have it a moment before.
		var got float64
		for deadline := time.Now().Add(10 * time.Second); ; {
			m, _, err := scrape(c, statsAddr)
			if err != nil {
				t.Fatal(err)
			}
			if got = m[key]; got == float64(total) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got != float64(total) {
			t.Fatalf("start %d: %s = %v, want %d", run+1, key, got, total)
		}
		pid := d.pid()
		c.CloseIdleConnections()
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitGoneWithin(t, 10*time.Second, "lb after SIGTERM", pid)
	}
}
