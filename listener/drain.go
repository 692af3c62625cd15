package listener

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// drainPoll is how often Drain looks at the accept queue.
const drainPoll = 5 * time.Millisecond

// migrateReqPath is the sysctl net.ipv4.tcp_migrate_req of the caller's
// network namespace.
const migrateReqPath = "/proc/sys/net/ipv4/tcp_migrate_req"

// QueueLen returns how many established connections wait in ln's accept
// queue.
func QueueLen(ln *net.TCPListener) (int, error) {
	var n uint32
	err := control(ln, "getsockopt TCP_INFO", func(fd int) error {
		info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return err
		}
		// For a listening socket, tcpi_unacked is the accept queue length.
		n = info.Unacked
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listener %s: accept queue length: %w", ln.Addr(), err)
	}
	return int(n), nil
}

// Drain closes ln without resetting connections the kernel has queued on
// it. Call it after new connections are steered elsewhere, and keep
// accepting on ln meanwhile: Drain only watches.
//
// It closes ln once grace has passed and the accept queue is empty,
// checking every 5ms. grace covers the handshakes that were already in
// flight on ln when steering changed: they complete into ln's queue within
// about one round trip (several, if a SYN-ACK is lost), so it should
// exceed the clients' round-trip time.
//
// If ctx ends first, Drain closes ln at once, which resets whatever is
// still queued, and returns an error matching ctx.Err(). Drain returns once
// ln is closed; an ln that is closed already is not an error.
func Drain(ctx context.Context, ln *net.TCPListener, grace time.Duration) error {
	graceOver := time.NewTimer(grace)
	defer graceOver.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()

	waiting := true
	for {
		if !waiting {
			n, err := QueueLen(ln)
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if err != nil || n == 0 {
				return errors.Join(err, closeListener(ln))
			}
		}
		select {
		case <-ctx.Done():
			err := closeListener(ln)
			return errors.Join(fmt.Errorf("listener %s: drain cut short: %w", ln.Addr(), ctx.Err()), err)
		case <-graceOver.C:
			waiting = false
		case <-tick.C:
		}
	}
}

// closeListener closes ln; closing it twice is not an error.
func closeListener(ln *net.TCPListener) error {
	if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("listener %s: close: %w", ln.Addr(), err)
	}
	return nil
}

// MigrateReq reports whether net.ipv4.tcp_migrate_req is on in this network
// namespace. When it is, the kernel hands the connections queued on a
// closing listener to another socket of its reuseport group instead of
// resetting them (Linux 5.14 and later; setting it needs CAP_NET_ADMIN, for
// example with sysctl.d or docker run --sysctl). On an older kernel the
// error matches os.ErrNotExist.
func MigrateReq() (bool, error) {
	b, err := os.ReadFile(migrateReqPath)
	if err != nil {
		return false, fmt.Errorf("sysctl net.ipv4.tcp_migrate_req: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return false, fmt.Errorf("sysctl net.ipv4.tcp_migrate_req: %s: %w", migrateReqPath, err)
	}
	return v != 0, nil
}
