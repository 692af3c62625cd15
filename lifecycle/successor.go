package lifecycle

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"lb/reload"
)

// succession is the start of the next generation on SIGHUP or SIGUSR2.
// The loop runs at most one at a time, and coalesces the reload signals
// that arrive meanwhile into it.
type succession struct {
	done      chan struct{} // closed once the successor serves or has failed
	coalesced int           // reload signals received while it started
}

// ended returns a channel closed once the successor serves or has failed;
// nil, which never gets ready in a select, when s is nil.
func (s *succession) ended() <-chan struct{} {
	if s == nil {
		return nil
	}
	return s.done
}

// reloadSignal handles SIGHUP and SIGUSR2, given the successor being
// started (nil: none), and returns the successor being started after it.
func (g *Generation) reloadSignal(ctx context.Context, sig os.Signal, next *succession) *succession {
	switch {
	case next != nil:
		next.coalesced++
		return next
	case g.state.Load() != stateServing:
		g.Log.Warn().Str("signal", sig.String()).
			Msg("reload signal ignored: this generation is stopping; send it to the serving generation (the pid file's)")
		return nil
	}
	next = &succession{done: make(chan struct{})}
	go g.startSuccessor(ctx, sig, next.done)
	return next
}

// endSuccession says, once the successor serves or has failed, how many
// reload signals were coalesced into its start. Go's signal channel and
// the kernel merge a signal sent while the same one is pending, so more
// may have been sent than lb received.
func (g *Generation) endSuccession(s *succession) {
	if s.coalesced > 0 {
		g.Log.Info().Int("signals", s.coalesced).
			Msg("reload: more SIGHUP/SIGUSR2 signals arrived while the next generation was starting: coalesced into this reload " +
				"(signals: how many lb received, at least; if the configuration changed after the reload began, reload again)")
	}
}

// startSuccessor starts the next generation with this one's arguments plus
// -sf and this pid, from the same executable path, so that a new binary
// there is picked up. The successor signals this generation once ready.
// It closes done once the successor serves or has failed.
func (g *Generation) startSuccessor(ctx context.Context, sig os.Signal, done chan<- struct{}) {
	defer close(done)
	path, err := selfPath()
	if err != nil {
		g.Log.Error().Err(err).Msg("reload: cannot find lb's executable")
		return
	}
	// The successor takes over through this generation's own admin socket,
	// whatever -x said when this one started.
	own := ""
	if g.admin != nil {
		own = g.adminSocketPath()
	}
	args := append(reload.WithTakeover(reload.WithoutStopPids(g.Opts.RawArgs), own), "-sf", strconv.Itoa(g.self.Pid))
	env := []string{envGeneration + "=" + strconv.Itoa(g.number+1)}
	g.Log.Info().Str("signal", sig.String()).Str("executable", path).Strs("args", args).Msg("reload: starting the next generation")
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	// With -D the successor daemonizes itself, and its launcher exits
	// with the outcome.
	pid, out, err := g.host().Launch(ctx, Launch{Path: path, Args: args, Env: env, Daemon: g.Opts.Daemon})
	if err != nil {
		ev := g.Log.Error().Err(err)
		if g.Opts.Daemon {
			ev = ev.Str("output", strings.TrimSpace(string(out)))
		} else {
			ev = ev.Int("new_pid", pid)
		}
		ev.Msg("reload failed: this generation keeps serving")
		return
	}
	ev := g.Log.Info()
	if !g.Opts.Daemon {
		ev = ev.Int("new_pid", pid)
	}
	ev.Msg("reload: the next generation is serving")
}

// LaunchDaemon is lb -D: start lb again, with rawArgs, as a daemon and
// wait until it serves or fails. Its errors reach this process's stderr.
func LaunchDaemon(ctx context.Context, rawArgs []string) error {
	path, err := selfPath()
	if err != nil {
		return &ExitError{Code: ExitFailure, Msg: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, launchTimeout)
	defer cancel()
	_, err = reload.Launch{Path: path, Args: rawArgs, Daemon: true, Stderr: os.Stderr}.Run(ctx)
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() > 0 {
		// The daemon said why on stderr.
		return &ExitError{Code: ee.ExitCode()}
	}
	return &ExitError{Code: ExitFailure, Msg: "daemon " + err.Error()}
}

// selfPath is the executable as it was started (not /proc/self/exe, which
// names the old file after a binary upgrade), made absolute.
var selfPath = sync.OnceValues(func() (string, error) {
	arg0 := os.Args[0]
	if !strings.Contains(arg0, "/") {
		return exec.LookPath(arg0)
	}
	return filepath.Abs(arg0)
})
