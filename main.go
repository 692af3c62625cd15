// Command lb is a TCP and HTTP load balancer configured by a TOML file,
// reloaded without losing a connection or what it knew of its servers.
//
//	lb -f lb.toml            run in the foreground
//	lb -c -f lb.toml         check the configuration and exit
//
// See README.md for every flag, configuration key and signal.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"lb/config"
	"lb/lifecycle"
	"lb/provision"
	"lb/proxy"
	"lb/reload"
)

// version and commit are set at build time with -ldflags "-X main.version=...
// -X main.commit=..." (make build: the release tag as git describe gives
// it, and the commit); without them, commit comes from the build's VCS
// information.
var (
	version = "dev"
	commit  = ""
)

// versionString is what lb --version prints after "lb version".
func versionString() string {
	c, modified := commit, false
	if info, ok := debug.ReadBuildInfo(); ok && c == "" {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value[:min(len(s.Value), 12)]
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if c == "" {
		c = "unknown"
	}
	if modified {
		c += "-dirty"
	}
	return fmt.Sprintf("%s (commit %s, %s)", version, c, runtime.Version())
}

// Exit codes.
const (
	exitOK      = lifecycle.ExitOK
	exitFailure = lifecycle.ExitFailure
	exitUsage   = lifecycle.ExitUsage
)

// exitError carries an exit code and a message for stderr.
type exitError = lifecycle.ExitError

func usageError(format string, args ...any) error {
	return &exitError{Code: exitUsage, Msg: fmt.Sprintf(format, args...) + "\nRun 'lb --help' for usage."}
}

func main() {
	// lb offers no heap profile: sampling allocations for one would cost
	// every allocation a check, and memory (the profile's buckets, up to
	// some megabytes) for nothing.
	runtime.MemProfileRate = 0
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes lb's command line and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	// -sf and -st take any number of pids, which urfave/cli cannot parse:
	// take them out first.
	rest, stop, err := reload.SplitStopPids(args[1:])
	if err == nil {
		app := newApp(stdout, stderr, stop, args[1:])
		err = app.Run(append([]string{args[0]}, rest...))
	} else {
		err = usageError("%v", err)
	}
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.Msg != "" {
			fmt.Fprintln(stderr, "lb: "+strings.ReplaceAll(ee.Msg, "\n", "\nlb: "))
		}
		return ee.Code
	}
	// urfave/cli's own parse errors (unknown flag, missing value).
	fmt.Fprintf(stderr, "lb: %v\nlb: Run 'lb --help' for usage.\n", err)
	return exitUsage
}

func newApp(stdout, stderr io.Writer, stop reload.Stop, rawArgs []string) *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "lb version %s\n", c.App.Version) }
	flags := []cli.Flag{
		&cli.StringSliceFlag{Name: "f", Usage: "read the configuration from `FILE`; repeat to merge several files in order", TakesFile: true},
		&cli.BoolFlag{Name: "c", Usage: "check the configuration, print the result and exit without binding anything", DisableDefaultText: true},
		&cli.BoolFlag{Name: "q", Usage: "quiet: log errors only", DisableDefaultText: true},
		&cli.StringFlag{Name: "log-level", Usage: "log `LEVEL`: debug, info, warn or error (overrides global.log_level)"},
		&cli.BoolFlag{Name: "D", Usage: "daemon: run in the background; this command exits 0 once lb serves, or with lb's error", DisableDefaultText: true},
		&cli.StringFlag{Name: "p", Usage: "write the pid to `FILE` (atomically, once lb serves; overrides global.pid_file); launches that share it take turns, and FILE.sock is the default admin socket", TakesFile: true},
		&cli.StringFlag{Name: "x", Usage: "take the state and listening sockets over through the old generation's admin `SOCKET` (default: the configuration's admin socket)", TakesFile: true},
		// Parsed by reload.SplitStopPids before urfave/cli sees the
		// command line; here for the help, the man page and completion.
		&cli.BoolFlag{Name: "sf", Usage: "PID...: once ready, soft-stop these old generations: they finish their connections and exit", DisableDefaultText: true},
		&cli.BoolFlag{Name: "st", Usage: "PID...: once ready, hard-stop these old generations: they close their connections and exit", DisableDefaultText: true},
	}
	return &cli.App{
		Name:  "lb",
		Usage: "a TCP and HTTP load balancer that reloads without dropping a connection",
		UsageText: "lb -f FILE [-f FILE]... [-c] [-q] [--log-level LEVEL] [-D] [-p PIDFILE] [-x SOCKET] [-sf|-st [PID...]]\n" +
			"lb hash-password < password-file\n" +
			"lb man | lb completion bash|fish",
		Description: "Reload: lb -f lb.toml -p lb.pid -D -sf $(cat lb.pid) starts a new generation that takes the listening sockets, " +
			"the server state and the counters over from the old one, which finishes its connections and exits. " +
			"Signals: SIGUSR1 soft stop, SIGTERM/SIGINT hard stop, SIGHUP reload in place (the same command line), SIGUSR2 binary upgrade. " +
			"The README is the manual: every flag, configuration key, signal and admin command.",
		Version:                   versionString(),
		EnableBashCompletion:      true,
		Commands:                  commands(),
		Writer:                    stdout,
		ErrWriter:                 stderr,
		HideHelpCommand:           true,
		DisableSliceFlagSeparator: true,
		Flags:                     flags,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError("%v", err)
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			o, err := parseOptions(c)
			if err != nil {
				return err
			}
			o.stop, o.rawArgs = stop, rawArgs
			return action(c, o)
		},
	}
}

// options is the command line after checking.
type options struct {
	files    []string
	check    bool
	logLevel string // empty: from the configuration
	daemon   bool
	pidFile  string
	takeover string      // -x: the old generation's admin socket
	stop     reload.Stop // -sf and -st
	rawArgs  []string    // the arguments as given, for a successor
}

func parseOptions(c *cli.Context) (options, error) {
	if c.NArg() > 0 {
		return options{}, usageError("unexpected argument %q: configuration files are given with -f", c.Args().First())
	}
	o := options{files: c.StringSlice("f"), check: c.Bool("c"), logLevel: c.String("log-level"),
		daemon: c.Bool("D"), pidFile: c.String("p"), takeover: c.String("x")}
	if len(o.files) == 0 {
		return options{}, usageError("no configuration file: use -f FILE")
	}
	if c.Bool("q") {
		if o.logLevel != "" {
			return options{}, usageError("-q and --log-level cannot be used together")
		}
		o.logLevel = "error"
	}
	if o.logLevel != "" {
		if _, err := parseLevel(o.logLevel); err != nil {
			return options{}, usageError("--log-level: %v", err)
		}
	}
	return o, nil
}

func action(c *cli.Context, o options) error {
	// Taken first, so that no process started later inherits it.
	ready := reload.ReadinessFromEnv()
	cfg, err := config.Load(o.files...)
	if err != nil {
		return configError(err)
	}
	fds := lifecycle.PlanFDs(cfg)
	ctx := context.Background()
	if o.check {
		if _, err := build(ctx, cfg, zerolog.Nop()); err != nil {
			return configError(err)
		}
		// A limit too low is a warning, not an error: lb serves, and
		// holds new connections in the accept queue beyond it.
		fds.Warn(c.App.ErrWriter)
		fmt.Fprintln(c.App.Writer, "configuration is valid")
		return nil
	}
	if o.daemon && !ready.Daemon() {
		return lifecycle.LaunchDaemon(ctx, o.rawArgs)
	}
	// Launches that share a pid file take turns under its reload lock, and
	// each serves the configuration as it is at its turn: the last launch
	// serves the newest configuration, whichever launch read it first.
	var lock *reload.Lock
	if path := cmp.Or(o.pidFile, cfg.Global.PidFile); path != "" {
		if lock, err = lifecycle.LockReload(ctx, path); err != nil {
			return &exitError{Code: exitFailure, Msg: err.Error()}
		}
		defer lock.Release() // Run releases it once the old generations are signalled
		if cfg, err = config.Load(o.files...); err != nil {
			return configError(err)
		}
		fds = lifecycle.PlanFDs(cfg)
	}
	level := o.logLevel
	if level == "" {
		level = cfg.Global.LogLevel
	}
	logFile, err := openLog(cfg.Global.LogFile)
	if err != nil {
		return &exitError{Code: exitFailure, Msg: err.Error()}
	}
	logOut := c.App.ErrWriter
	if logFile != nil {
		logOut = logFile
	}
	sys, err := openSyslog(cfg.Global, o.daemon, logFile)
	if err != nil {
		return &exitError{Code: exitFailure, Msg: fmt.Sprintf("%s: %v", cfg.GlobalPos("syslog"), err)}
	}
	log, err := newLogger(logOut, sys, level)
	if err != nil {
		return &exitError{Code: exitFailure, Msg: err.Error()}
	}
	p, err := build(ctx, cfg, log)
	if err != nil {
		return configError(err)
	}
	fds.Apply(p)
	useHTTPLog(cfg, p, logOut, sys)
	g := &lifecycle.Generation{
		Opts: lifecycle.Options{Files: o.files, Daemon: o.daemon, PidFile: o.pidFile, Takeover: o.takeover,
			Stop: o.stop, RawArgs: o.rawArgs, Version: version},
		Cfg: cfg, Proxy: p, Log: log, Ready: ready, LogFile: logFile, FDs: fds, Lock: lock,
		OnNumber: func(n int) { logGeneration.Store(int64(n)) }, Syslog: sys != nil,
	}
	return g.Run(ctx)
}

// build makes the proxy of a configuration: its frontends, each with its
// TCP or HTTP handler, and its backends.
func build(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*proxy.Proxy, error) {
	return provision.Build(ctx, cfg, nil, log)
}

// configError reports every configuration error, one per line.
func configError(err error) error {
	var errs config.Errors
	if errors.As(err, &errs) {
		return &exitError{Code: exitFailure, Msg: fmt.Sprintf("%v\nconfiguration is invalid: %d error(s)", err, len(errs))}
	}
	return &exitError{Code: exitFailure, Msg: err.Error()}
}

// parseLevel accepts the log levels that lb documents.
func parseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return zerolog.ParseLevel(s)
	}
	return zerolog.NoLevel, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}
