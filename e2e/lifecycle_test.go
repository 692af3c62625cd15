package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
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
		if g := showGeneration(t, d.adminSock); g != gen {
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
