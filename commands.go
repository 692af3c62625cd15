package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"time"

	"lb/admin"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/bcrypt"
)

// commands are lb's commands besides serving: tools for its operators.
func commands() []*cli.Command {
	return []*cli.Command{
		{
			Name:      "hash-password",
			Usage:     "read a password on standard input and print its bcrypt hash, for stats.password_hash",
			UsageText: "lb hash-password < password-file   (or type it, then Enter)",
			Action:    hashPassword,
		},
		{
			Name:  "admin",
			Usage: "send a command to a running lb's admin socket and print the answer",
			// "lb admin help" is the admin socket's help: the command's
			// own is "lb admin -h".
			HideHelpCommand: true,
			UsageText:       "lb admin [-s SOCKET] show info   (SOCKET: default lb-admin.sock, as config.example.toml sets it)",
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "s", Usage: "the admin `SOCKET`", Value: "lb-admin.sock", TakesFile: true},
			},
			Action: adminCommand,
		},
		{
			Name:      "man",
			Usage:     "print lb's man page (roff), made from this command line's definition",
			UsageText: "lb man > /usr/local/share/man/man1/lb.1",
			Action: func(c *cli.Context) error {
				page, err := c.App.ToMan()
				if err != nil {
					return err
				}
				_, err = fmt.Fprint(c.App.Writer, page)
				return err
			},
		},
		{
			Name:      "completion",
			Usage:     "print a shell completion script: bash or fish",
			UsageText: "source <(lb completion bash)   or   lb completion fish > ~/.config/fish/completions/lb.fish",
			Action:    completion,
		},
	}
}

// adminCommand is "lb admin": one command, its answer on stdout; exit 1
// when lb answers with an error.
func adminCommand(c *cli.Context) error {
	if c.NArg() == 0 {
		return usageError("admin: name a command, such as: lb admin show info (lb admin help lists them)")
	}
	conn, err := admin.Dial(c.String("s"), 5*time.Second)
	if err != nil {
		return &exitError{Code: exitFailure, Msg: fmt.Sprintf("admin socket %s: %v", c.String("s"), err)}
	}
	defer conn.Close()
	if _, err := fmt.Fprintln(conn, strings.Join(c.Args().Slice(), " ")); err != nil {
		return &exitError{Code: exitFailure, Msg: err.Error()}
	}
	reply, err := io.ReadAll(conn)
	if err != nil {
		return &exitError{Code: exitFailure, Msg: err.Error()}
	}
	_, _ = c.App.Writer.Write(reply)
	if strings.HasPrefix(string(reply), "error: ") {
		return &exitError{Code: exitFailure}
	}
	return nil
}

// hashPassword is "lb hash-password".
func hashPassword(c *cli.Context) error {
	line, err := bufio.NewReader(c.App.Reader).ReadString('\n')
	pass := strings.TrimRight(line, "\r\n")
	if pass == "" {
		if err != nil {
			return usageError("hash-password: no password on standard input: %v", err)
		}
		return usageError("hash-password: the password is empty")
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
	if err != nil {
		return &exitError{Code: exitFailure, Msg: "hash-password: " + err.Error()}
	}
	_, err = fmt.Fprintln(c.App.Writer, string(hash))
	return err
}

// bashCompletion completes lb's flags and commands, and the files its file
// flags take; lb --generate-bash-completion lists the flags and commands.
const bashCompletion = `# bash completion for lb: source <(lb completion bash)
_lb() {
	local cur prev
	cur="${COMP_WORDS[COMP_CWORD]}"
	prev="${COMP_WORDS[COMP_CWORD-1]}"
	case "$prev" in
	-f|-p|-x) COMPREPLY=($(compgen -f -- "$cur")); return ;;
	--log-level) COMPREPLY=($(compgen -W "debug info warn error" -- "$cur")); return ;;
	-sf|-st) COMPREPLY=($(compgen -W "$(pgrep -x lb)" -- "$cur")); return ;;
	completion) COMPREPLY=($(compgen -W "bash fish" -- "$cur")); return ;;
	esac
	COMPREPLY=($(compgen -W "%s" -- "$cur"))
}
complete -o default -F _lb lb
`

// completion is "lb completion bash|fish".
func completion(c *cli.Context) error {
	switch c.Args().First() {
	case "bash":
		var words []string
		for _, f := range c.App.VisibleFlags() {
			for _, n := range f.Names() {
				if len(n) == 1 || n == "sf" || n == "st" {
					words = append(words, "-"+n)
				} else {
					words = append(words, "--"+n)
				}
			}
		}
		for _, cmd := range c.App.VisibleCommands() {
			words = append(words, cmd.Name)
		}
		_, err := fmt.Fprintf(c.App.Writer, bashCompletion, strings.Join(words, " "))
		return err
	case "fish":
		s, err := c.App.ToFishCompletion()
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(c.App.Writer, s)
		return err
	}
	return usageError("completion: name the shell: lb completion bash, or lb completion fish")
}
