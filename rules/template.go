package rules

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Env holds the variables' values for one request. The zero value, like a
// nil *Env, leaves every variable empty.
type Env struct {
	// Client is the client's address: %[client_ip], %[client_port] and
	// %[client]. An IPv4-mapped IPv6 address is shown as IPv4.
	Client netip.AddrPort
	// Server is the name of the server chosen for the request, empty
	// before one is: %[server].
	Server string
	// ServerAddr is the chosen server's address, ip:port: %[server_addr].
	ServerAddr string
	// Backend is the backend's name: %[backend].
	Backend string
	// Frontend is the frontend's name: %[frontend].
	Frontend string
	// RequestID is the request's id: %[request_id].
	RequestID []byte
	// Scheme is "http" or "https": %[scheme].
	Scheme string
	// Host is the request's host, as it sent it: %[host].
	Host []byte
}

// variable identifies a template variable; 0 is none.
type variable uint8

const (
	varNone variable = iota
	varClientIP
	varClientPort
	varClient
	varServer
	varServerAddr
	varBackend
	varFrontend
	varRequestID
	varScheme
	varHost
)

// varNames are the variables' names, by variable.
var varNames = [...]string{
	varClientIP:   "client_ip",
	varClientPort: "client_port",
	varClient:     "client",
	varServer:     "server",
	varServerAddr: "server_addr",
	varBackend:    "backend",
	varFrontend:   "frontend",
	varRequestID:  "request_id",
	varScheme:     "scheme",
	varHost:       "host",
}

// Vars lists the variable names, for documentation and messages: client_ip,
// client_port, client (ip:port, or [ip]:port for IPv6), server, server_addr,
// backend, frontend, request_id, scheme and host. See Env for their values.
var Vars = []string{"client_ip", "client_port", "client", "server", "server_addr", "backend", "frontend", "request_id", "scheme", "host"}

// Template is a header value with variables: %[name] is replaced by the
// variable's value (see Env and Vars), and %% is a literal %. It is safe for
// concurrent use.
//
// The expansion never contains a control character other than tab: the
// literal text may not contain any, and those in a variable's value are
// replaced by spaces, so that no value can end a header field early.
type Template struct {
	src  string
	segs []segment
}

// segment is literal text, or a variable when v is set.
type segment struct {
	lit string
	v   variable
}

// CompileTemplate parses a template. It refuses an unknown variable, a "%"
// that starts neither %% nor a complete %[name], and control characters
// other than tab in the literal text. Its errors are *SpecError with Key
// "value" and Index -1.
func CompileTemplate(s string) (*Template, error) {
	t := &Template{src: s}
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			t.segs = append(t.segs, segment{lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(s); {
		c := s[i]
		if c != '%' {
			if isCTL(c) {
				return nil, specErr("value", -1, s, "contains %s, which cannot appear in a header value: remove it", charAt(s, i))
			}
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 == len(s) {
			return nil, specErr("value", -1, s, `ends with a lone "%%": write %%%% for a literal percent sign`)
		}
		switch s[i+1] {
		case '%':
			lit.WriteByte('%')
			i += 2
		case '[':
			end := strings.IndexByte(s[i+2:], ']')
			if end < 0 {
				return nil, specErr("value", -1, s, `has %q without a closing "]": write %%[name] for a variable, or %%%% for a literal percent sign`, clip(s[i:], 24))
			}
			name := s[i+2 : i+2+end]
			v := lookupVar(name)
			if v == varNone {
				return nil, &SpecError{Key: "value", Index: -1, Value: s, Msg: unknownVar(name)}
			}
			flush()
			t.segs = append(t.segs, segment{v: v})
			i += end + 3
		default:
			_, n := utf8.DecodeRuneInString(s[i+1:])
			return nil, specErr("value", -1, s, `has %q, which is neither %%[name] nor %%%%: write %%%% for a literal percent sign`, s[i:i+1+n])
		}
	}
	flush()
	return t, nil
}

// clip returns s, cut to at most n bytes followed by "..." when longer.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// lookupVar returns the variable called name, or varNone.
func lookupVar(name string) variable {
	for v, n := range varNames {
		if v != int(varNone) && n == name {
			return variable(v)
		}
	}
	return varNone
}

// unknownVar is the message about a %[name] whose name is not a variable's.
// It suggests the variable meant when name differs from it only by case,
// "-" for "_", or a missing "_".
func unknownVar(name string) string {
	squash := func(s string) string {
		return strings.ToLower(strings.NewReplacer("_", "", "-", "", " ", "").Replace(s))
	}
	for _, n := range varNames[1:] {
		if squash(n) == squash(name) {
			return fmt.Sprintf("has unknown variable %q: write %q", "%["+name+"]", "%["+n+"]")
		}
	}
	return fmt.Sprintf("has unknown variable %q: use one of %s", "%["+name+"]", strings.Join(varNames[1:], ", "))
}

// String returns the template's source, as given to CompileTemplate.
func (t *Template) String() string { return t.src }

// zeroEnv stands for a nil *Env.
var zeroEnv Env

// Append appends the template's expansion with env's values to dst and
// returns the extended slice. A nil env leaves every variable empty.
func (t *Template) Append(dst []byte, env *Env) []byte {
	if env == nil {
		env = &zeroEnv
	}
	for _, s := range t.segs {
		if s.v == varNone {
			dst = append(dst, s.lit...)
		} else {
			dst = env.append(dst, s.v)
		}
	}
	return dst
}

// append appends the value of variable v to dst, with a space for each
// control character that may not appear in a header value.
func (e *Env) append(dst []byte, v variable) []byte {
	n := len(dst)
	dst = e.appendRaw(dst, v)
	for i := n; i < len(dst); i++ {
		if isCTL(dst[i]) {
			dst[i] = ' '
		}
	}
	return dst
}

// appendRaw appends the value of variable v to dst.
func (e *Env) appendRaw(dst []byte, v variable) []byte {
	switch v {
	case varClientIP, varClientPort, varClient:
		a := e.Client.Addr()
		if !a.IsValid() {
			return dst
		}
		a = a.Unmap()
		if v == varClientPort {
			return strconv.AppendUint(dst, uint64(e.Client.Port()), 10)
		}
		if v == varClientIP {
			return a.AppendTo(dst)
		}
		if a.Is6() {
			dst = append(dst, '[')
			dst = a.AppendTo(dst)
			dst = append(dst, ']')
		} else {
			dst = a.AppendTo(dst)
		}
		dst = append(dst, ':')
		return strconv.AppendUint(dst, uint64(e.Client.Port()), 10)
	case varServer:
		return append(dst, e.Server...)
	case varServerAddr:
		return append(dst, e.ServerAddr...)
	case varBackend:
		return append(dst, e.Backend...)
	case varFrontend:
		return append(dst, e.Frontend...)
	case varRequestID:
		return append(dst, e.RequestID...)
	case varScheme:
		return append(dst, e.Scheme...)
	case varHost:
		return append(dst, e.Host...)
	}
	return dst
}
