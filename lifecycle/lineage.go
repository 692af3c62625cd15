package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"lb/config"
	"lb/listener"
	"lb/reload"
	"lb/state"
)

// adminNone is the global.admin_socket value that turns the admin socket
// off, default included.
const adminNone = "none"

// defaultAdminSuffix names the default admin socket beside the pid file.
const defaultAdminSuffix = ".sock"

// adminSocketPath is this generation's admin socket: global.admin_socket,
// else the pid file's path plus ".sock"; "" for none.
func (g *Generation) adminSocketPath() string {
	switch p := g.Cfg.Global.AdminSocket; p {
	case adminNone:
		return ""
	case "":
		pid := g.pidPath()
		if pid == "" || len(pid)+len(defaultAdminSuffix) > config.MaxUnixPath {
			return ""
		}
		return pid + defaultAdminSuffix
	default:
		return p
	}
}

// lockReload takes the reload lock beside the pid file, so that launches
// that overlap take turns, and learns which generation serves: the one the
// pid file names, if it is a running lb. A start that names no generation
// to replace while one serves is refused.
func (g *Generation) lockReload(ctx context.Context) error {
	path := g.pidPath()
	if path == "" {
		return nil
	}
	if g.Lock == nil {
		lock, err := LockReload(ctx, path)
		if err != nil {
			return err
		}
		g.Lock = lock
	}
	pid := reload.ReadPid(path)
	if pid == 0 || pid == g.self.Pid {
		return nil
	}
	if err := g.host().CheckLB(g.self, pid); err != nil {
		g.Log.Info().Str("pid_file", path).Str("reason", err.Error()).Msg("the pid file names no running lb: nothing to replace")
		return nil
	}
	if g.Opts.Stop.Empty() && g.Opts.Takeover == "" {
		g.Lock.Release()
		return fmt.Errorf("pid file %s: lb pid %d serves already; to replace it, reload: %s", path, pid, g.reloadCommand(pid))
	}
	g.replace(pid)
	return nil
}

// LockReload takes the reload lock of the pid file at path, waiting for
// the launches ahead (at most as long as a launch may take).
func LockReload(ctx context.Context, path string) (*reload.Lock, error) {
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	return reload.AcquireLock(ctx, path)
}

// reloadCommand is the command line that would replace pid with this
// configuration, for error messages.
func (g *Generation) reloadCommand(pid int) string {
	args := []string{"lb"}
	for _, f := range g.Opts.Files {
		args = append(args, "-f", f)
	}
	if p := g.pidPath(); p != "" && g.Opts.PidFile != "" {
		args = append(args, "-p", p)
	}
	return strings.Join(append(args, "-D", "-sf", strconv.Itoa(pid)), " ")
}

// replace adds pid to the generations this one stops once it serves,
// unless -sf or -st names it already: softly, unless only -st was given.
func (g *Generation) replace(pid int) {
	s := &g.Opts.Stop
	if slices.Contains(s.Soft, pid) || slices.Contains(s.Hard, pid) {
		return
	}
	if len(s.Hard) > 0 && len(s.Soft) == 0 {
		s.Hard = append(s.Hard, pid)
		return
	}
	s.Soft = append(s.Soft, pid)
}

// replacing reports whether this generation replaces another one.
func (g *Generation) replacing() bool { return !g.Opts.Stop.Empty() }

// handoverPaths are the admin sockets where the serving generation may
// answer, in order: -x, then this configuration's admin socket.
func (g *Generation) handoverPaths() []string {
	var ps []string
	if g.Opts.Takeover != "" {
		ps = append(ps, g.Opts.Takeover)
	}
	if p := g.adminSocketPath(); p != "" && p != g.Opts.Takeover {
		ps = append(ps, p)
	}
	return ps
}

// fetchLive takes the server state over from the serving generation's
// admin socket, and remembers that socket for the listeners' handover.
// The generation that answers is replaced too, whatever -sf named. A
// failure that loses state the operator expects is reported on the
// launcher's stderr.
func (g *Generation) fetchLive() (state.Doc, bool) {
	if !g.replacing() && g.Opts.Takeover == "" {
		return state.Doc{}, false
	}
	var errs []error
	for _, path := range g.handoverPaths() {
		d, err := fetchState(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("admin socket %s: %w", path, err))
			continue
		}
		g.oldAdmin = path
		if d.Pid != 0 && d.Pid != g.self.Pid && g.host().CheckLB(g.self, d.Pid) == nil {
			g.replace(d.Pid)
		}
		if path != g.Opts.Takeover && g.Opts.Takeover != "" {
			g.warnLauncher(fmt.Sprintf("-x %s: the old generation did not answer there (%v); took over through %s instead",
				g.Opts.Takeover, errs[0], path))
		}
		return d, true
	}
	switch {
	case g.Opts.Takeover != "":
		g.warnLauncher(fmt.Sprintf("-x %s: cannot take the state or the listening sockets over: %v; "+
			"binding new sockets, and taking the server state from the state file if any", g.Opts.Takeover, errors.Join(errs...)))
	case len(errs) > 0:
		g.warnLauncher(fmt.Sprintf("cannot take the server state over from the serving generation: %v; "+
			"taking it from the state file if any", errors.Join(errs...)))
	}
	return state.Doc{}, false
}

// warnLauncher logs a warning that whoever runs the reload must see, and
// writes it on stderr too when the logs go to a file: with -D, stderr is
// the launcher's until this generation serves.
func (g *Generation) warnLauncher(msg string) {
	g.Log.Warn().Msg(msg)
	if g.LogFile != nil {
		fmt.Fprintln(os.Stderr, "lb: warning: "+strings.ReplaceAll(msg, "\n", " "))
	}
}

// refuseJoin returns an error when addr is served by another process that
// this generation does not replace: it would join that process's
// SO_REUSEPORT group and take its new connections.
func (g *Generation) refuseJoin(addr string) error {
	if g.replacing() {
		return nil
	}
	owners, members, err := listener.Owners(addr)
	if err != nil || members == 0 {
		return nil // Join says what is wrong with addr
	}
	if len(owners) == 0 {
		return fmt.Errorf("%s is served already by %d socket(s) of a process lb cannot see (another user's?): "+
			"lb would share its connections with it; stop it, or bind another address", addr, members)
	}
	var lbs []int
	var others []string
	for _, pid := range owners {
		if g.host().CheckLB(g.self, pid) == nil {
			lbs = append(lbs, pid)
		} else {
			others = append(others, describePid(pid))
		}
	}
	if len(lbs) > 0 {
		return fmt.Errorf("%s is served already by lb pid %s: to replace it, reload: %s", addr, joinPids(lbs),
			g.reloadCommand(lbs[len(lbs)-1]))
	}
	return fmt.Errorf("cannot bind %s: address already in use by %s (lb would share its connections with it): stop it, or bind another address",
		addr, strings.Join(others, ", "))
}

// describePid names a process for an error message: "pid 12 (nginx)".
func describePid(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "pid " + strconv.Itoa(pid)
	}
	return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(b)))
}

// joinPids lists pids for a message: "12, 14".
func joinPids(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}
