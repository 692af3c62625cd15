package config

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParseExpect turns a check's expect list into inclusive ranges of HTTP
// statuses: "200" is 200-200, "2xx" is 200-299, "200-204" is itself. An
// empty list means 2xx and 3xx.
func ParseExpect(list []string) ([][2]int, error) {
	if len(list) == 0 {
		return [][2]int{{200, 399}}, nil
	}
	out := make([][2]int, 0, len(list))
	for _, e := range list {
		r, err := parseStatusRange(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func parseStatusRange(e string) ([2]int, error) {
	bad := fmt.Errorf("expect %q is not a status: write a code (\"200\"), a class (\"2xx\") or a range (\"200-299\"), from 100 to 599", e)
	status := func(s string) (int, bool) {
		n, err := strconv.Atoi(s)
		return n, err == nil && len(s) == 3 && n >= 100 && n <= 599
	}
	if len(e) == 3 && strings.HasSuffix(e, "xx") && e[0] >= '1' && e[0] <= '5' {
		lo := int(e[0]-'0') * 100
		return [2]int{lo, lo + 99}, nil
	}
	if lo, hi, ok := strings.Cut(e, "-"); ok {
		l, ok1 := status(lo)
		h, ok2 := status(hi)
		if !ok1 || !ok2 || l > h {
			return [2]int{}, bad
		}
		return [2]int{l, h}, nil
	}
	n, ok := status(e)
	if !ok {
		return [2]int{}, bad
	}
	return [2]int{n, n}, nil
}

// checkProblem is one bad key of a check, by its name in the check table.
type checkProblem struct{ key, msg string }

// checkProblems lists what is wrong with c, key by key, and keeps its
// parsed expect list.
func checkProblems(c *Check) []checkProblem {
	var ps []checkProblem
	add := func(key, format string, args ...any) {
		ps = append(ps, checkProblem{key, fmt.Sprintf(format, args...)})
	}
	switch c.Type {
	case CheckTCP, CheckHTTP, CheckNone:
	default:
		add("type", "check.type %q is not valid: use tcp, http or none", c.Type)
	}
	if c.Interval <= 0 {
		add("interval", "check.interval %s must be more than 0", c.Interval)
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{{"fast_interval", c.FastInterval}, {"down_interval", c.DownInterval}, {"timeout", c.Timeout}} {
		if d.v < 0 {
			add(d.key, "check.%s %s is negative: use 0 for check.interval", d.key, d.v)
		}
	}
	for _, n := range []struct {
		key string
		v   int
	}{{"rise", c.Rise}, {"fall", c.Fall}} {
		if n.v < 1 || n.v > 100 {
			add(n.key, "check.%s %d is out of range (1 to 100)", n.key, n.v)
		}
	}
	if c.Port < 0 || c.Port > 65535 {
		add("port", "check.port %d is out of range: use 0 for the server's port, or 1 to 65535", c.Port)
	}
	if c.Address != "" {
		if _, err := netip.ParseAddr(c.Address); err != nil && !validHostname(c.Address) {
			add("address", "check.address %q is not an IP address or a host name (give the port as check.port)", c.Address)
		}
	}
	if c.Method == "" || strings.Trim(c.Method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != "" {
		add("method", "check.method %q is not an HTTP method: use upper-case letters, like GET or HEAD", c.Method)
	}
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \t\r\n") {
		add("path", "check.path %q is not valid: start it with \"/\" and leave out spaces", c.Path)
	}
	if strings.ContainsAny(c.Host, " \t\r\n") {
		add("host", "check.host %q is not valid: leave out spaces", c.Host)
	}
	var err error
	if c.expect, err = ParseExpect(c.Expect); err != nil {
		add("expect", "check.%v", err)
	}
	if c.ErrorLimit < 0 {
		add("error_limit", "check.error_limit %d is negative: use 0 to turn passive checks off", c.ErrorLimit)
	}
	if c.OnError != OnErrorMarkDown && c.OnError != OnErrorFastInterval {
		add("on_error", "check.on_error %q is not valid: use %s or %s", c.OnError, OnErrorMarkDown, OnErrorFastInterval)
	}
	return ps
}
