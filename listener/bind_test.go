package listener

import (
	"context"
	"errors"
	"net"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBindSharesPort(t *testing.T) {
	a := bindT(t, "127.0.0.1:0")
	b := bindT(t, a.Addr().String())
	if a.Addr().String() != b.Addr().String() {
		t.Fatalf("second listener on %s, want %s", b.Addr(), a.Addr())
	}
	d := net.Dialer{}
	for _, ln := range []*net.TCPListener{a, b} {
		g := startGeneration(ln)
		defer g.stop()
	}
	for i := 0; i < 20; i++ {
		if err := fetch(&d, a.Addr().String()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBindAddressInUse(t *testing.T) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	plain, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0") // no SO_REUSEPORT
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	addr := plain.Addr().String()
	ln, err := Bind(context.Background(), addr)
	if err == nil {
		ln.Close()
		t.Fatalf("Bind(%s) beside a plain listener succeeded", addr)
	}
	var errno syscall.Errno
	if !errors.As(err, &errno) || errno != syscall.EADDRINUSE {
		t.Fatalf("Bind(%s): %v; want errno EADDRINUSE reachable with errors.As", addr, err)
	}
	if want := "listener " + addr + ": bind: address already in use"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestBindSocketOptions(t *testing.T) {
	tests := []struct {
		addr     string
		family   int
		v6only   int // checked for IPv6 sockets only
		needIPv6 bool
	}{
		{addr: "127.0.0.1:0", family: unix.AF_INET},
		{addr: "0.0.0.0:0", family: unix.AF_INET},
		{addr: "[::ffff:127.0.0.1]:0", family: unix.AF_INET},
		{addr: "[::1]:0", family: unix.AF_INET6, v6only: 1, needIPv6: true},
		{addr: "[::]:0", family: unix.AF_INET6, v6only: 1, needIPv6: true},
		{addr: ":0", family: unix.AF_INET6, v6only: 0, needIPv6: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			if tt.needIPv6 && !hasIPv6() {
				t.Skip("no IPv6 on this system")
			}
			ln := bindT(t, tt.addr)
			if got := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_PROTOCOL); got != unix.IPPROTO_TCP {
				t.Errorf("SO_PROTOCOL = %d, want IPPROTO_TCP (%d): multipath TCP is on", got, unix.IPPROTO_TCP)
			}
			if got := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_REUSEPORT); got != 1 {
				t.Errorf("SO_REUSEPORT = %d, want 1", got)
			}
			if got := sockoptInt(t, ln, unix.SOL_SOCKET, unix.SO_DOMAIN); got != tt.family {
				t.Errorf("SO_DOMAIN = %d, want %d", got, tt.family)
			}
			if tt.family == unix.AF_INET6 {
				if got := sockoptInt(t, ln, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); got != tt.v6only {
					t.Errorf("IPV6_V6ONLY = %d, want %d", got, tt.v6only)
				}
			}
		})
	}
}

func TestBindRejectsBadAddresses(t *testing.T) {
	for _, addr := range []string{
		"localhost:8080",
		"127.0.0.1",
		"127.0.0.1:http",
		"127.0.0.1:65536",
		"127.0.0.1:-1",
		"[::1:8080",
		"",
	} {
		t.Run(addr, func(t *testing.T) {
			ln, err := Bind(context.Background(), addr)
			if err == nil {
				ln.Close()
				t.Fatalf("Bind(%q) succeeded", addr)
			}
			if !strings.HasPrefix(err.Error(), "listener "+addr+": ") {
				t.Errorf("error %q does not start with %q", err, "listener "+addr+": ")
			}
			if _, err := GroupSizeAt(addr); err == nil {
				t.Errorf("GroupSizeAt(%q) succeeded", addr)
			}
		})
	}
}
