package config

import (
	"golang.org/x/crypto/bcrypt"

	"net/netip"
	"strings"
	"testing"
)

const statsBase = `
[[frontend]]
name = "web"
bind = ["127.0.0.1:8080"]
default_backend = "app"

[[backend]]
name = "app"

[[backend.server]]
name = "a"
address = "127.0.0.1:9000"
`

func TestStatsTable(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bcryptHash := string(hash)
	for _, tc := range []struct {
		name, stats string
		want        string // an error fragment with its line; "" for none
	}{
		{name: "none"},
		{name: "bind", stats: `bind = "127.0.0.1:8404"`},
		{name: "allow", stats: `bind = ":8404"` + "\nallow = [\"10.0.0.0/8\", \"127.0.0.1\", \"::1\"]"},
		{name: "auth", stats: `bind = ":8404"` + "\nuser = \"ops\"\npassword_hash = \"" + bcryptHash + "\""},
		{name: "bad bind", stats: `bind = "8404"`, want: `lb.toml:2: stats: bind address "8404" has no port`},
		{name: "bind of a frontend", stats: `bind = "127.0.0.1:8080"`,
			want: `lb.toml:2: stats: bind address "127.0.0.1:8080" is already used by frontend "web" at lb.toml:6`},
		{name: "allow without bind", stats: `allow = ["10.0.0.0/8"]`, want: `lb.toml:2: stats: allow is set but bind is not`},
		{name: "bad allow", stats: `bind = ":8404"` + "\nallow = [\"10.0.0.0/33\"]", want: `lb.toml:3: stats: allow entry "10.0.0.0/33" is neither`},
		{name: "user alone", stats: `bind = ":8404"` + "\nuser = \"ops\"", want: `lb.toml:3: stats: user is set without password_hash`},
		{name: "plain password", stats: `bind = ":8404"` + "\nuser = \"ops\"\npassword_hash = \"secret\"", want: `lb.toml:4: stats: password_hash is not a bcrypt hash`},
		{name: "admin", stats: `bind = ":8404"` + "\nadmin = true\nuser = \"ops\"\npassword_hash = \"" + bcryptHash + "\""},
		{name: "admin without auth", stats: `bind = ":8404"` + "\nadmin = true", want: `lb.toml:3: stats: admin = true needs user and password_hash`},
		{name: "unknown key", stats: `bnd = ":8404"`, want: `lb.toml:2: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			text := "[stats]\n" + tc.stats + "\n" + statsBase
			cfg, err := Parse(Source{Name: "lb.toml", Data: []byte(text)})
			if err == nil {
				err = cfg.Validate()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("error %v, want none", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestStatsAllowPrefixes(t *testing.T) {
	s := Stats{Allow: []string{"10.1.2.3/8", "127.0.0.1", "::1"}}
	got := s.AllowPrefixes()
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	if len(got) != len(want) {
		t.Fatalf("AllowPrefixes() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("AllowPrefixes() = %v, want %v", got, want)
		}
	}
}
