package e2e

import (
	"os/exec"

	"golang.org/x/crypto/bcrypt"

	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckExampleConfig(t *testing.T) {
	code, stdout, stderr := runLB(t, "-c", "-f", "../config.example.toml")
	if code != 0 || strings.TrimSpace(stdout) != "configuration is valid" {
		t.Fatalf("lb -c -f config.example.toml: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// TestCheckCatchesBadConfigs runs lb -c on one broken configuration per kind
// of mistake and checks the exit code, the file:line and the message.
func TestCheckCatchesBadConfigs(t *testing.T) {
	const head = "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8080\"]\ndefault_backend = \"app\"\n\n[[backend]]\nname = \"app\"\n"
	// head is 7 lines; the server tables start at line 8.
	const s1 = "[[backend.server]]\nname = \"s1\"\naddress = \"127.0.0.1:9001\"\n"
	for _, tc := range []struct {
		name, text, want string
	}{
		{"unknown key", head + s1 + "adress = \"x\"\n", `lb.toml:11: backend "app": server "s1": unknown key "adress"`},
		{"wrong type", head + s1 + "weight = \"3\"\n", `lb.toml:11: backend "app": server "s1": weight`},
		{"bad duration", "[defaults.timeout]\nconnect = \"5 seconds\"\n" + head + s1, `lb.toml:2:`},
		{"address without port", head + "[[backend.server]]\nname = \"s1\"\naddress = \"10.0.0.1\"\n", `lb.toml:10: backend "app": server "s1": address "10.0.0.1" has no port`},
		{"missing backend", strings.Replace(head, `default_backend = "app"`, `default_backend = "api"`, 1) + s1, `lb.toml:4: frontend "web": default_backend "api" is not defined`},
		{"duplicate server", head + s1 + s1, `lb.toml:12: backend "app": server "s1" is already defined at `},
		{"duplicate frontend", head + s1 + "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:8081\"]\ndefault_backend = \"app\"\n", `lb.toml:12: frontend "web"`},
		{"empty backend", head, `lb.toml:6: backend "app" has no servers`},
		{"weight out of range", head + s1 + "weight = 300\n", `lb.toml:11: backend "app": server "s1": weight 300 is out of range`},
		{"bad balance", strings.Replace(head, "name = \"app\"\n", "name = \"app\"\nbalance = \"fastest\"\n", 1) + s1, `lb.toml:8: backend "app":`},
		{"syntax error", head + s1 + "weight = = 3\n", `lb.toml:11:`},
		{"unresolvable host", head + "[[backend.server]]\nname = \"s1\"\naddress = \"no-such-host.invalid:80\"\n", `lb.toml:10: backend "app": server "s1": cannot resolve "no-such-host.invalid"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runLB(t, "-c", "-f", writeConfig(t, tc.text))
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			if strings.Contains(stdout, "configuration is valid") {
				t.Errorf("stdout says valid: %q", stdout)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not contain %q:\n%s", tc.want, stderr)
			}
		})
	}
}

func TestCheckReportsEveryError(t *testing.T) {
	text := `[[frontend]]
name = "web"
bind = ["127.0.0.1:0"]
default_backend = "nope"

[[backend]]
name = "app"
[[backend.server]]
name = "s1"
address = "127.0.0.1"
weight = 999
`
	code, _, stderr := runLB(t, "-c", "-f", writeConfig(t, text))
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	for _, want := range []string{"lb.toml:3:", "lb.toml:4:", "lb.toml:10:", "lb.toml:11:"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks an error at %s:\n%s", want, stderr)
		}
	}
}

func TestMultipleFilesMerge(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.toml")
	extra := filepath.Join(dir, "extra.toml")
	s := startServer(t, "s")
	port := freePort(t)
	if err := os.WriteFile(base, []byte(fmt.Sprintf("[global]\nlog_level = \"warn\"\n\n[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = %q\n", s.addr())), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(extra, []byte(fmt.Sprintf("[global]\nlog_level = \"info\"\n\n[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:%d\"]\ndefault_backend = \"app\"\n", port)), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, stdout, stderr := runLB(t, "-c", "-f", base, "-f", extra); code != 0 {
		t.Fatalf("lb -c with two files: exit %d\n%s%s", code, stdout, stderr)
	}
	// The second file's log level wins: the info start-up line appears.
	startLB(t, "-f", base, "-f", extra)
	expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
	// A name defined in both files is an error that names both.
	if err := os.WriteFile(extra, []byte("[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"t\"\naddress = \"127.0.0.1:1\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runLB(t, "-c", "-f", base, "-f", extra)
	if code != 1 || !strings.Contains(stderr, `extra.toml:2: backend "app" is already defined at `+base+":5") {
		t.Fatalf("duplicate backend across files: exit %d, stderr:\n%s", code, stderr)
	}
}

func TestCommandLine(t *testing.T) {
	cfg := writeConfig(t, "[[frontend]]\nname = \"web\"\nbind = [\"127.0.0.1:1\"]\ndefault_backend = \"app\"\n[[backend]]\nname = \"app\"\n[[backend.server]]\nname = \"s\"\naddress = \"127.0.0.1:2\"\n")
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		inStdout string
		inStderr string
	}{
		{"version", []string{"-v"}, 0, "lb version ", ""},
		{"long version", []string{"--version"}, 0, "lb version ", ""},
		{"help", []string{"--help"}, 0, "-f FILE", ""},
		{"unknown flag", []string{"-f", cfg, "-z"}, 2, "", "flag provided but not defined: -z"},
		{"stray argument", []string{"-f", cfg, "extra"}, 2, "", `unexpected argument "extra"`},
		{"no config", []string{"-c"}, 2, "", "no configuration file: use -f FILE"},
		{"missing file", []string{"-c", "-f", "/nonexistent/lb.toml"}, 1, "", "/nonexistent/lb.toml"},
		{"bad log level", []string{"-c", "-f", cfg, "--log-level", "loud"}, 2, "", `unknown log level "loud"`},
		{"quiet and level", []string{"-c", "-f", cfg, "-q", "--log-level", "info"}, 2, "", "-q and --log-level"},
		{"-sf with a word", []string{"-f", cfg, "-sf", "123", "lb.pid"}, 2, "", `-sf: "lb.pid" is not a process id`},
		{"-D with a bad configuration", []string{"-f", "/nonexistent/lb.toml", "-D"}, 1, "", "/nonexistent/lb.toml"},
		{"-p without a file", []string{"-f", cfg, "-p"}, 2, "", "flag needs an argument: -p"},
		{"check ok", []string{"-c", "-f", cfg}, 0, "configuration is valid", ""},
		{"help names HTTP", []string{"-h"}, 0, "a TCP and HTTP load balancer", ""},
		{"version names the commit", []string{"-v"}, 0, "(commit ", ""},
		{"man page", []string{"man"}, 0, ".SH NAME", ""},
		{"bash completion", []string{"completion", "bash"}, 0, "complete -o default -F _lb lb", ""},
		{"fish completion", []string{"completion", "fish"}, 0, "complete -c lb", ""},
		{"completion of no shell", []string{"completion"}, 2, "", "name the shell"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runLB(t, tc.args...)
			if code != tc.code || !strings.Contains(stdout, tc.inStdout) || !strings.Contains(stderr, tc.inStderr) {
				t.Errorf("lb %v: exit %d (want %d)\nstdout: %q (want %q)\nstderr: %q (want %q)",
					tc.args, code, tc.code, stdout, tc.inStdout, stderr, tc.inStderr)
			}
		})
	}
}

func TestQuietLogsOnlyErrors(t *testing.T) {
	s := startServer(t, "s")
	port := freePort(t)
	cfg := writeConfig(t, config(port, "", serverLine("s", s.addr(), "")))
	p := launch(t, "-q", "-f", cfg)
	// No start-up line to wait for: poll the port instead.
	waitPort(t, port)
	expectAnswer(t, fmt.Sprintf("127.0.0.1:%d", port), "s")
	p.stop(t)
	if out := p.stderr.String(); out != "" {
		t.Fatalf("lb -q logged:\n%s", out)
	}
}

// TestHelpIsClean: each flag's placeholder once, and no "(default: false)" after the
// flags that take no value.
func TestHelpIsClean(t *testing.T) {
	_, stdout, _ := runLB(t, "-h")
	if strings.Contains(stdout, "(default: false)") {
		t.Errorf("lb -h shows (default: false):\n%s", stdout)
	}
	for _, line := range strings.Split(stdout, "\n") {
		if strings.Count(strings.ReplaceAll(line, "PIDFILE", ""), "PID") > 1 {
			t.Errorf("lb -h names PID twice on a line: %q", line)
		}
	}
}

// TestHashPassword: the hash lb hash-password prints is one that
// stats.password_hash takes, and it matches the password.
func TestHashPassword(t *testing.T) {
	cmd := exec.Command(lbBin, "hash-password")
	cmd.Stdin = strings.NewReader("s3cret\n")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("lb hash-password: %v", err)
	}
	hash := strings.TrimSpace(string(out))
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("s3cret")); err != nil {
		t.Fatalf("lb hash-password printed %q: %v", hash, err)
	}
	cmd = exec.Command(lbBin, "hash-password")
	cmd.Stdin = strings.NewReader("")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "no password") {
		t.Fatalf("lb hash-password with nothing on stdin: %v, %s", err, out)
	}
}
