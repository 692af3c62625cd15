// Package listener owns lb's listening sockets across reloads, so that a
// reload never drops a connection the kernel has already accepted for lb.
//
// Every socket is bound with SO_REUSEPORT, so the generations of lb that
// overlap during a reload share one reuseport group per address. The new
// generation joins the group (Join), starts accepting, and steers every new
// connection to its own socket with a one-instruction classic-BPF program
// (SteerSelf). The old generation then drains its socket (Drain): it keeps
// accepting until its accept queue is empty and the handshakes still in
// flight on it have had a grace period to complete, and only then closes it.
// Closing a listener resets whatever is still queued on it, which is what a
// plain SO_REUSEPORT reload loses.
//
// The program returns an index into the group, in join order, and the
// kernel moves the group's last socket into the slot of one that leaves, so
// indices are only stable while the group holds at most two sockets. Join
// therefore waits until at most one socket (the serving one) is left before
// it binds.
//
// Alternatively a generation hands its very sockets to the next one over a
// unix socket (Send, Receive); no queue is ever closed then.
//
// This package is Linux only.
package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// bindSpec is what a bind address means to this package.
type bindSpec struct {
	// network is "tcp4", "tcp6" (IPv6 only) or "tcp" (dual stack).
	network string
	// listen is the address handed to net.ListenConfig.Listen.
	listen string
	// local is the local address the socket shows in /proc/net/tcp[6]:
	// the unspecified IPv6 address for a dual-stack socket.
	local netip.AddrPort
}

// parseBind interprets addr as "host:port" with an IP literal or an empty
// host. Host names are refused: a name can resolve to several addresses or
// change between reloads, while a reuseport group is one exact address.
func parseBind(addr string) (bindSpec, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return bindSpec{}, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return bindSpec{}, fmt.Errorf("address %q: port %q is not a number from 0 to 65535", addr, portText)
	}
	portText = strconv.FormatUint(port, 10)
	if host == "" {
		return bindSpec{
			network: "tcp",
			listen:  ":" + portText,
			local:   netip.AddrPortFrom(netip.IPv6Unspecified(), uint16(port)),
		}, nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return bindSpec{}, fmt.Errorf("address %q: host %q is not an IP address (write an IPv4 or IPv6 literal, or leave the host empty to listen on all addresses)", addr, host)
	}
	if ip.Is4In6() {
		ip = ip.Unmap()
	}
	spec := bindSpec{
		network: "tcp6",
		listen:  net.JoinHostPort(ip.String(), portText),
		local:   netip.AddrPortFrom(ip.WithZone(""), uint16(port)),
	}
	if ip.Is4() {
		spec.network = "tcp4"
	}
	return spec, nil
}

// Bind listens on addr with SO_REUSEPORT set and multipath TCP off.
//
// addr is "host:port". An IPv4 literal host listens on IPv4 only, an IPv6
// literal on IPv6 only (IPV6_V6ONLY), and an empty host on every address of
// both families (one dual-stack socket where the system has IPv6). Host
// names and service names are refused.
//
// MPTCP stays off because the kernel refuses reuseport steering programs on
// MPTCP sockets, and Go turns MPTCP on by default.
//
// Errors start with "listener <addr>: " and keep the system call's errno
// reachable with errors.As or errors.Is (syscall.EADDRINUSE,
// syscall.EACCES, syscall.EADDRNOTAVAIL, ...). ctx only bounds the set-up.
func Bind(ctx context.Context, addr string) (*net.TCPListener, error) {
	spec, err := parseBind(addr)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", addr, err)
	}
	return bind(ctx, addr, spec)
}

// bind is Bind after parsing; addr names the listener in errors.
func bind(ctx context.Context, addr string, spec bindSpec) (*net.TCPListener, error) {
	lc := net.ListenConfig{Control: setReusePort}
	lc.SetMultipathTCP(false)
	l, err := lc.Listen(ctx, spec.network, spec.listen)
	if err != nil {
		// The *net.OpError repeats the network and address; its cause
		// ("bind: address already in use") carries the errno.
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Err != nil {
			err = opErr.Err
		}
		return nil, fmt.Errorf("listener %s: %w", addr, err)
	}
	ln, ok := l.(*net.TCPListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("listener %s: got a %T, want a *net.TCPListener", addr, l)
	}
	return ln, nil
}

// setReusePort is the net.ListenConfig Control hook: it runs after the
// socket is created and before bind(2).
func setReusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	if err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt SO_REUSEPORT", serr)
}

// control runs f on ln's file descriptor and returns f's error as an
// *os.SyscallError named op (nil stays nil). A closed listener gives an
// error that matches net.ErrClosed.
func control(ln *net.TCPListener, op string, f func(fd int) error) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return os.NewSyscallError(op, ferr)
}
