package e2e

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"lb/internal/testcert"
)

// The defects of the generation lifecycle that issue 11 lists, each as a
// test that failed before the lifecycle was rebuilt.

// logPids returns the pids of the generations that logged "lb started" in
// a daemons log file.
func logPids(t *testing.T, log string) []int {
	t.Helper()
	var pids []int
	sc := bufio.NewScanner(strings.NewReader(log))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m struct {
			Pid     int    `json:"pid"`
			Message string `json:"message"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Message == "lb started" && !slices.Contains(pids, m.Pid) {
			pids = append(pids, m.Pid)
		}
	}
	return pids
}

// showGeneration returns the generation number that show info reports.
func showGeneration(t *testing.T, sock string) int {
	t.Helper()
	info := adminQuery(t, sock, "show info")
	m := regexp.MustCompile(`(?m)^generation: (\d+)$`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("show info has no generation:\n%s", info)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// Defect 1: 20 launches at once, all with -sf naming the same old pid (a
// retrying deploy, concurrent cron jobs). They take turns; at the end one
// generation serves, the one the pid file names, and every other one has
// exited.
func TestOverlappingLaunchesLeaveOneGeneration(t *testing.T) {
	s := startServer(t, "s")
	d := newDaemons(t, "", s)
	first := d.mustLaunch()
	waitPort(t, d.port)
	const launches = 20
	var wg sync.WaitGroup
	results := make([]cmdResult, launches)
	for i := range launches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = runCmd(t, 2*time.Minute, nil, lbBin, "-f", d.cfg, "-p", d.pidFile, "-D", "-sf", strconv.Itoa(first))
		}()
	}
	wg.Wait()
	pids := logPids(t, d.log())
	for _, p := range pids {
		d.seen[p] = true
	}
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("launch %d: %v", i, r)
		}
	}
	if len(pids) != launches+1 {
		t.Fatalf("%d generations started, want %d:\n%s", len(pids), launches+1, d.log())
	}
	serving := d.pid()
	if !slices.Contains(pids, serving) || serving == first || !alive(serving) {
		t.Fatalf("the pid file names %d, not a live generation of the %d launched", serving, launches)
	}
	var others []int
	for _, p := range pids {
		if p != serving {
			others = append(others, p)
		}
	}
	// No connection is open: every replaced generation exits at once.
	waitGoneWithin(t, 20*time.Second, "a replaced generation", others...)
	expectAnswer(t, d.addr(), "s")
	if got := listenInodes(t, d.port); len(got) != 1 {
		t.Errorf("%d sockets listen on port %d, want 1", len(got), d.port)
	}
	if g := showGeneration(t, d.adminSock); g != launches+1 {
		t.Errorf("the serving generation is number %d, want %d", g, launches+1)
	}
}

// Defect 2: a second lb on an address a running lb serves, with no -sf and
// no -x, is refused: exit 1, naming the pid that serves the address and
// the reload command; the first lb serves on alone. The same with the
// running lb's pid file.
func TestSecondLBOnServedAddressIsRefused(t *testing.T) {
	s, other := startServer(t, "s"), startServer(t, "other")
	d := newDaemons(t, "", s)
	pid := d.mustLaunch()
	waitPort(t, d.port)
	before := listenInodes(t, d.port)

	dir := t.TempDir()
	cfg := writeConfig(t, withoutAdmin(daemonConfig(dir, d.port, "", other)))
	// Should it start after all, it is stopped when the test ends.
	t.Cleanup(func() { stopLBs(t, 15*time.Second, readPid(filepath.Join(dir, "lb.pid"))) })
	code, stdout, stderr := runLB(t, "-f", cfg, "-p", filepath.Join(dir, "lb.pid"), "-D")
	want := fmt.Sprintf("127.0.0.1:%d is served already by lb pid %d: to replace it, reload: lb -f %s -p %s -D -sf %d",
		d.port, pid, cfg, filepath.Join(dir, "lb.pid"), pid)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("a second lb on the same address: exit %d, stdout %q, stderr:\n%s\nwant exit 1 and %q", code, stdout, stderr, want)
	}
	code, _, stderr = runLB(t, "-f", d.cfg, "-p", d.pidFile, "-D")
	want = fmt.Sprintf("pid file %s: lb pid %d serves already; to replace it, reload: lb -f %s -p %s -D -sf %d", d.pidFile, pid, d.cfg, d.pidFile, pid)
	if code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("lb -D with the serving lb's pid file and no -sf: exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, want)
	}
	if d.pid() != pid || !alive(pid) {
		t.Fatalf("the pid file names %d, want %d still serving", d.pid(), pid)
	}
	if got := listenInodes(t, d.port); !slices.Equal(got, before) {
		t.Errorf("sockets on port %d: %v, want the first lb's %v alone", d.port, got, before)
	}
	for range 4 {
		expectAnswer(t, d.addr(), "s")
	}
}

// Defect 3 and 5: a mistyped -x is said on the launcher's stderr, and the
// new generation still takes the server state over from the live
// generation (not from an older state file), so what `set server` changed
// holds; a SIGHUP afterwards does not replay the typo. Generation numbers
// only increase.
func TestMistypedTakeoverKeepsLiveState(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	d := newDaemons(t, fmt.Sprintf("state_file = %q", filepath.Join(t.TempDir(), "lb.state")), a, b)
	d.mustLaunch()
	d.mustLaunch() // the state file now holds generation 2's state: b ready
	if got := adminQuery(t, d.adminSock, "set server app/b state maint"); !strings.Contains(got, "is now maint") {
		t.Fatalf("set server: %q", got)
	}
	typo := filepath.Join(d.dir, "admin.sokc")
	code, out := d.launch("-x", typo)
	if code != 0 {
		t.Fatalf("lb -D -x %s: exit %d:\n%s", typo, code, out)
	}
	if want := "lb: warning: -x " + typo + ": the old generation did not answer there"; !strings.Contains(out, want) {
		t.Errorf("the launcher's output does not say %q:\n%s", want, out)
	}
	check := func(after string, gen int) {
		t.Helper()
		if st := serverState(t, d, "b"); st[4] != "maint" {
			t.Fatalf("after %s, b is %v: want maint, as set on the live generation", after, st)
		}
		// The pid file names the new generation a moment before its
		// admin socket takes the path over.
		g := showGeneration(t, d.adminSock)
		for end := time.Now().Add(10 * time.Second); g != gen && time.Now().Before(end); g = showGeneration(t, d.adminSock) {
			time.Sleep(10 * time.Millisecond)
		}
		if g != gen {
			t.Fatalf("after %s the serving generation is number %d, want %d", after, g, gen)
		}
		for range 4 {
			expectAnswer(t, d.addr(), "a")
		}
	}
	check("a reload with a mistyped -x", 3)

	old := d.pid()
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p := waitPidFile(t, d.pidFile, old, d.log)
	d.seen[p] = true
	check("a SIGHUP", 4)
	// The successor took over through its predecessor's own socket: the
	// typo is in the one warning line of generation 3, nowhere else.
	var withTypo []string
	for _, line := range strings.Split(d.log(), "\n") {
		if strings.Contains(line, typo) {
			withTypo = append(withTypo, line)
		}
	}
	if len(withTypo) != 1 || !strings.Contains(d.log(), `"args":["-f",`+strconv.Quote(d.cfg)+`,"-p",`+strconv.Quote(d.pidFile)+`,"-D","-x",`+strconv.Quote(d.adminSock)+`,"-sf",`) {
		t.Errorf("%d log lines name the typo (want 1), or the SIGHUP successor's arguments lack -x %s:\n%s", len(withTypo), d.adminSock, d.log())
	}
}

// Defect 4: with state_file and no admin socket, each generation writes the
// file as its servers' state changes, so the next one starts from the
// current state, not from the one the previous stop left.
func TestStateFileFollowsChanges(t *testing.T) {
	a, b := startChecked(t, "a"), startChecked(t, "b")
	d := newDaemons(t, "")
	stateFile := filepath.Join(d.dir, "lb.state")
	var lines []string
	for _, s := range []*checked{a, b} {
		lines = append(lines, serverLine(s.name, s.addr(), fmt.Sprintf("check = { port = %d }", s.checkPort)))
	}
	// rise 10 x 100ms: a server wrongly believed down stays out for a second.
	d.writeConfig(withoutAdmin(daemonConfigBackend(d.dir, d.port, fmt.Sprintf("state_file = %q", stateFile), fmt.Sprintf(`
[backend.check]
interval = "100ms"
timeout = "100ms"
rise = 10
fall = 2

%s`, strings.Join(lines, "\n")))))
	b.checkDown()
	d.mustLaunch()
	waitPort(t, d.port)
	d.mustLaunch() // generation 2: b down, from the file generation 1 wrote
	fileSays := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			raw, _ := os.ReadFile(stateFile)
			var doc struct {
				Generation int `json:"generation"`
				Servers    []struct {
					Server string `json:"server"`
					Up     bool   `json:"up"`
				} `json:"servers"`
			}
			if json.Unmarshal(raw, &doc) == nil && doc.Generation == 2 && len(doc.Servers) == 2 && doc.Servers[1].Up == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the state file does not say b up=%v in generation 2 within 10s:\n%s\nlog:\n%s", want, raw, d.log())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fileSays(false)
	b.checkUp()
	fileSays(true) // written by the serving generation, which did not stop
	d.mustLaunch()
	seen := map[string]bool{}
	for range 6 {
		seen[whoAnswers(t, d.addr(), "")] = true
	}
	if !seen["b"] {
		t.Fatalf("right after the reload, b got no connection: the new generation believed it down (answered by %v)\nlog:\n%s", seen, d.log())
	}
}

// tlsVisit makes one HTTPS request to addr with a fresh connection and the
// client's session cache, and reports whether the TLS session was resumed.
func tlsVisit(t *testing.T, addr string, cfg *tls.Config) bool {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: lb.test\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// Reading the answer also reads the session ticket that TLS 1.3 sends
	// after the handshake.
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("HTTPS through %s: %v", addr, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("HTTPS through %s: status %d", addr, resp.StatusCode)
	}
	return c.ConnectionState().DidResume
}

// tlsDaemons are daemons with a TLS frontend in front of one backend;
// global adds keys to [global].
func tlsDaemons(t *testing.T, global string) (*daemons, *tls.Config) {
	t.Helper()
	s := hrStartBackend(t, "s1")
	d := newDaemons(t, "")
	ca := testcert.NewCA(t)
	certFile, keyFile := ca.WriteLeaf(t, d.dir, "lb", "127.0.0.1")
	tlsTable := fmt.Sprintf("[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n", certFile, keyFile)
	text := hrConfig(d, "300ms", tlsTable, "", s)
	if global != "" {
		text = strings.Replace(text, "[global]\n", "[global]\n"+global+"\n", 1)
	}
	d.writeConfig(text)
	return d, &tls.Config{RootCAs: ca.Pool(), ClientSessionCache: tls.NewLRUClientSessionCache(4)}
}

// The TLS session ticket keys are handed from generation to generation: a
// client resumes its session after each of 20 reloads, plain and by SIGHUP.
func TestTLSSessionResumesAcrossReloads(t *testing.T) {
	hrFastExit(t)
	d, client := tlsDaemons(t, "")
	statsPort := freePort(t)
	text, err := os.ReadFile(d.cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.writeConfig(string(text) + statsTable(statsPort, ""))
	d.mustLaunch()
	if tlsVisit(t, d.addr(), client) {
		t.Fatal("the first connection resumed a session it never had")
	}
	for i := range 20 {
		if i%5 == 4 {
			old := d.pid()
			if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			d.seen[waitPidFile(t, d.pidFile, old, d.log)] = true
		} else {
			d.mustLaunch()
		}
		if !tlsVisit(t, d.addr(), client) {
			t.Fatalf("after reload %d the client made a full TLS handshake: the session was not resumed\nlog:\n%s", i+1, d.log())
		}
	}
	// The metrics count them, across the 20 reloads: 21 handshakes, 20
	// resumed.
	c := &http.Client{Timeout: 5 * time.Second}
	var m map[string]float64
	for end := time.Now().Add(15 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if m, _, err = scrape(c, fmt.Sprintf("127.0.0.1:%d", statsPort)); err == nil &&
			m[`lb_frontend_tls_handshakes_total{frontend="web"}`] == 21 && m[`lb_frontend_tls_resumed_total{frontend="web"}`] == 20 {
			return
		}
	}
	t.Errorf("after 21 TLS connections, 20 of them resumed: handshakes %v, resumed %v (%v)",
		m[`lb_frontend_tls_handshakes_total{frontend="web"}`], m[`lb_frontend_tls_resumed_total{frontend="web"}`], err)
}

// ticket_keys_file: lbs that share it (a fleet) resume each other's
// sessions; the newest key, the last line, encrypts and the others only
// decrypt, so the operator rotates by appending a key, reloading, and
// dropping the oldest. A file others may read is refused.
func TestTicketKeysFile(t *testing.T) {
	hrFastExit(t)
	keysFile := filepath.Join(t.TempDir(), "tickets.keys")
	key := func() string {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return base64.StdEncoding.EncodeToString(b)
	}
	writeKeys := func(keys ...string) {
		t.Helper()
		if err := os.WriteFile(keysFile, []byte("# ticket keys, newest last\n"+strings.Join(keys, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	k1, k2, k3 := key(), key(), key()
	writeKeys(k1)
	global := fmt.Sprintf("ticket_keys_file = %q", keysFile)
	a, client := tlsDaemons(t, global)
	b, _ := tlsDaemons(t, global)
	a.mustLaunch()
	b.mustLaunch()
	if tlsVisit(t, a.addr(), client) {
		t.Fatal("the first connection resumed a session it never had")
	}
	if !tlsVisit(t, b.addr(), client) {
		t.Fatal("lb B did not resume a session lb A made, with the same ticket_keys_file")
	}
	// Rotation: k2 is added (the newest: it encrypts), then k1 dropped.
	writeKeys(k1, k2)
	a.mustLaunch()
	if !tlsVisit(t, a.addr(), client) {
		t.Fatal("with k1 still in the file, a k1 ticket was not resumed")
	}
	writeKeys(k2)
	a.mustLaunch()
	if !tlsVisit(t, a.addr(), client) {
		t.Fatal("after k1 was dropped, the ticket made under k2 (the newest key) was not resumed")
	}
	writeKeys(k3)
	a.mustLaunch()
	if tlsVisit(t, a.addr(), client) {
		t.Fatal("a ticket made under k2 was resumed with only k3 in the file")
	}

	if err := os.Chmod(keysFile, 0o640); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runLB(t, "-c", "-f", a.cfg)
	if want := "global: ticket_keys_file: " + keysFile + " has mode 0640: group or others may read or write it"; code != 1 || !strings.Contains(stderr, want) {
		t.Fatalf("lb -c with a keys file others may read: exit %d, stderr:\n%s\nwant %q", code, stderr, want)
	}
}

// A generation that a newer one replaced without signalling it (the pid
// file names the newer one, written by a launch that went around the
// reload lock) soft-stops itself.
func TestSupersededGenerationStops(t *testing.T) {
	s := startServer(t, "s")
	a, b := newDaemons(t, "", s), newDaemons(t, "", s)
	pa, pb := a.mustLaunch(), b.mustLaunch()
	if err := os.WriteFile(a.pidFile, []byte(strconv.Itoa(pb)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitGoneWithin(t, 15*time.Second, "a generation the pid file no longer names", pa)
	if !strings.Contains(a.log(), `"message":"superseded: the pid file names another serving lb, which did not signal this generation; soft-stopping"`) {
		t.Errorf("the superseded generation did not say why it stopped:\n%s", a.log())
	}
	if !alive(pb) {
		t.Fatal("the generation the pid file names stopped too")
	}
	expectAnswer(t, b.addr(), "s")
}

// Launches that wait for the reload lock read the configuration at their
// turn: however their turns fall, the last one serves the configuration
// written last, even when an older launch gets the last turn.
func TestWaitingLaunchesServeTheNewestConfiguration(t *testing.T) {
	a, b := startServer(t, "a"), startServer(t, "b")
	d := newDaemons(t, "", a)
	first := d.mustLaunch()
	gate := hfHoldReloadLock(t, d.pidFile)
	var wg sync.WaitGroup
	results := make([]cmdResult, 5)
	launch := func(i int) {
		defer wg.Done()
		results[i] = runCmd(t, 2*time.Minute, nil, lbBin, "-f", d.cfg, "-p", d.pidFile, "-D", "-sf", strconv.Itoa(first))
	}
	for i := range 4 {
		wg.Add(1)
		go launch(i)
	}
	// The four read the configuration of server a and wait for the lock;
	// then it changes to server b, and a fifth launch comes.
	time.Sleep(500 * time.Millisecond)
	d.writeConfig(daemonConfig(d.dir, d.port, "", b))
	wg.Add(1)
	go launch(4)
	time.Sleep(300 * time.Millisecond)
	gate.Close()
	wg.Wait()
	for _, p := range logPids(t, d.log()) {
		d.seen[p] = true
	}
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("launch %d: %v", i, r)
		}
	}
	for range 4 {
		expectAnswer(t, d.addr(), "b")
	}
}
