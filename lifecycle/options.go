package lifecycle

import "lb/reload"

// Options is what the command line says about the lifecycle.
type Options struct {
	Files    []string    // -f, in order
	Daemon   bool        // -D
	PidFile  string      // -p; "" for global.pid_file
	Takeover string      // -x: the old generation's admin socket
	Stop     reload.Stop // -sf and -st
	RawArgs  []string    // the arguments as given, for a successor
	Version  string      // lb's version, for show info and the logs
}

// Exit codes.
const (
	ExitOK      = 0
	ExitFailure = 1 // bad configuration, or lb could not start
	ExitUsage   = 2 // bad command line
)

// ExitError carries an exit code and a message for stderr.
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }
