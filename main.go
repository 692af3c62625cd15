// Command lb is a TCP load balancer configured by a TOML file.
//
//	lb -f lb.toml            run in the foreground
//	lb -c -f lb.toml         check the configuration and exit
//
// See README.md for every flag, configuration key and signal.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"lb/config"
	"lb/proxy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1 // bad configuration, or lb could not start
	exitUsage   = 2 // bad command line
)

// exitError carries an exit code and a message for stderr.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func usageError(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...) + "\nRun 'lb --help' for usage."}
}

// reservedFlags belong to daemon-style reloads, which this version does not
// have yet; naming them is an error rather than a silent no-op.
var reservedFlags = []string{"D", "p", "sf", "st", "x"}

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run executes lb's command line and returns its exit code.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	err := app.Run(args)
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "lb: "+strings.ReplaceAll(ee.msg, "\n", "\nlb: "))
		}
		return ee.code
	}
	// urfave/cli's own parse errors (unknown flag, missing value).
	fmt.Fprintf(stderr, "lb: %v\nlb: Run 'lb --help' for usage.\n", err)
	return exitUsage
}

func newApp(stdout, stderr io.Writer) *cli.App {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "lb version %s\n", c.App.Version) }
	flags := []cli.Flag{
		&cli.StringSliceFlag{Name: "f", Usage: "read the configuration from `FILE`; repeat to merge several files in order", TakesFile: true},
		&cli.BoolFlag{Name: "c", Usage: "check the configuration, print the result and exit without binding anything"},
		&cli.BoolFlag{Name: "q", Usage: "quiet: log errors only"},
		&cli.StringFlag{Name: "log-level", Usage: "log `LEVEL`: debug, info, warn or error (overrides global.log_level)"},
	}
	for _, name := range reservedFlags {
		flags = append(flags, &cli.BoolFlag{Name: name, Hidden: true})
	}
	return &cli.App{
		Name:                      "lb",
		Usage:                     "a TCP load balancer configured by a TOML file",
		UsageText:                 "lb -f FILE [-f FILE]... [-c] [-q] [--log-level LEVEL]",
		Version:                   version,
		Writer:                    stdout,
		ErrWriter:                 stderr,
		HideHelpCommand:           true,
		DisableSliceFlagSeparator: true,
		Flags:                     flags,
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError("%v", err)
		},
		ExitErrHandler: func(*cli.Context, error) {},
		Action:         action,
	}
}

// options is the command line after checking.
type options struct {
	files    []string
	check    bool
	logLevel string // empty: from the configuration
}

func parseOptions(c *cli.Context) (options, error) {
	for _, name := range reservedFlags {
		if c.IsSet(name) {
			return options{}, usageError("flag -%s belongs to daemon-style reloads, which this version of lb does not support yet", name)
		}
	}
	if c.NArg() > 0 {
		return options{}, usageError("unexpected argument %q: configuration files are given with -f", c.Args().First())
	}
	o := options{files: c.StringSlice("f"), check: c.Bool("c"), logLevel: c.String("log-level")}
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

func action(c *cli.Context) error {
	o, err := parseOptions(c)
	if err != nil {
		return err
	}
	cfg, err := config.Load(o.files...)
	if err != nil {
		return configError(err)
	}
	level := o.logLevel
	if level == "" {
		level = cfg.Global.LogLevel
	}
	log, err := newLogger(c.App.ErrWriter, level)
	if err != nil {
		return &exitError{code: exitFailure, msg: err.Error()}
	}
	ctx := context.Background()
	p, err := proxy.Build(ctx, cfg, nil, log)
	if err != nil {
		return configError(err)
	}
	if o.check {
		fmt.Fprintln(c.App.Writer, "configuration is valid")
		return nil
	}
	return serve(ctx, cfg, p, log)
}

// configError reports every configuration error, one per line.
func configError(err error) error {
	var errs config.Errors
	if errors.As(err, &errs) {
		return &exitError{code: exitFailure, msg: fmt.Sprintf("%v\nconfiguration is invalid: %d error(s)", err, len(errs))}
	}
	return &exitError{code: exitFailure, msg: err.Error()}
}

// parseLevel accepts the log levels that lb documents.
func parseLevel(s string) (zerolog.Level, error) {
	switch s {
	case "debug", "info", "warn", "error":
		return zerolog.ParseLevel(s)
	}
	return zerolog.NoLevel, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}
