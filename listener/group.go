package listener

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// The socket tables of the caller's network namespace.
const (
	procNetTCP  = "/proc/net/tcp"
	procNetTCP6 = "/proc/net/tcp6"
)

// tcpListen is TCP_LISTEN as /proc/net/tcp prints it in the "st" column.
const tcpListen = 0x0A

// GroupSize returns how many TCP sockets of this network namespace are in
// LISTEN state on exactly ln's local address (family, IP and port), ln
// included: the members of its SO_REUSEPORT group.
//
// It reads /proc/net/tcp or /proc/net/tcp6, which do not tell a socket's
// owner or IPV6_V6ONLY flag apart: sockets on the same address that cannot
// share a group (another user's, or a dual-stack and an IPv6-only socket on
// [::]) are counted as members too.
func GroupSize(ln *net.TCPListener) (int, error) {
	var local netip.AddrPort
	err := control(ln, "getsockname", func(fd int) error {
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return err
		}
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			local = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			local = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), uint16(sa.Port))
		default:
			return fmt.Errorf("not an IP socket (%T)", sa)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("listener %s: count group members: %w", ln.Addr(), err)
	}
	n, err := countListening(local)
	if err != nil {
		return 0, fmt.Errorf("listener %s: count group members: %w", ln.Addr(), err)
	}
	return n, nil
}

// GroupSizeAt is GroupSize for the address that Bind(addr) listens on, so
// it can count the group before joining it. An empty host means the
// dual-stack socket on [::] (or 0.0.0.0 on a system without IPv6).
func GroupSizeAt(addr string) (int, error) {
	spec, err := parseBind(addr)
	if err != nil {
		return 0, fmt.Errorf("listener %s: %w", addr, err)
	}
	n, err := countSpec(spec)
	if err != nil {
		return 0, fmt.Errorf("listener %s: count group members: %w", addr, err)
	}
	return n, nil
}

// countSpec counts the listening sockets on spec's address.
func countSpec(spec bindSpec) (int, error) {
	return countListening(specLocal(spec))
}

// specLocal is the local address a socket bound by spec shows in
// /proc/net/tcp or /proc/net/tcp6.
func specLocal(spec bindSpec) netip.AddrPort {
	local := spec.local
	if spec.network == "tcp" {
		// Go falls back to an IPv4 socket when the kernel has no IPv6.
		if _, err := os.Stat(procNetTCP6); errors.Is(err, os.ErrNotExist) {
			local = netip.AddrPortFrom(netip.IPv4Unspecified(), local.Port())
		}
	}
	return local
}

// countListening counts the sockets in LISTEN state on local, which must
// carry no zone, in /proc/net/tcp (IPv4) or /proc/net/tcp6 (IPv6).
func countListening(local netip.AddrPort) (int, error) {
	inodes, err := listening(local)
	return len(inodes), err
}

// listening returns the inodes of the sockets in LISTEN state on local
// (0 for a line that shows none).
func listening(local netip.AddrPort) ([]uint64, error) {
	path := procNetTCP
	if local.Addr().Is6() {
		path = procNetTCP6
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var inodes []uint64
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		if line == 1 {
			continue // column titles
		}
		addr, state, err := parseProcNetTCPLine(sc.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if state != tcpListen {
			// The kernel prints the listening sockets first, then the
			// established hash table (connections, TIME_WAIT and, since
			// Linux 4.4, SYN_RECV requests). Stopping here spares walking
			// every connection of a busy proxy.
			break
		}
		if addr == local {
			var inode uint64
			if fields := bytes.Fields(sc.Bytes()); len(fields) > 9 {
				inode, _ = strconv.ParseUint(string(fields[9]), 10, 64)
			}
			inodes = append(inodes, inode)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return inodes, nil
}

// parseProcNetTCPLine returns the local address and state of one socket line
// of /proc/net/tcp or /proc/net/tcp6:
//
//	0: 0100007F:1F90 00000000:0000 0A ...
//
// The address is the in-memory (network order) address printed as 32-bit
// words in host byte order, %08X each; the port and state are plain hex.
func parseProcNetTCPLine(line []byte) (netip.AddrPort, int, error) {
	fields := bytes.Fields(line)
	if len(fields) < 4 {
		return netip.AddrPort{}, 0, fmt.Errorf("%d fields, want at least 4", len(fields))
	}
	hexAddr, hexPort, ok := bytes.Cut(fields[1], []byte(":"))
	if !ok {
		return netip.AddrPort{}, 0, fmt.Errorf("local address %q has no port", fields[1])
	}
	addr, err := parseProcNetAddr(hexAddr)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	port, err := strconv.ParseUint(string(hexPort), 16, 16)
	if err != nil || len(hexPort) != 4 {
		return netip.AddrPort{}, 0, fmt.Errorf("bad port %q", hexPort)
	}
	state, err := strconv.ParseUint(string(fields[3]), 16, 8)
	if err != nil || len(fields[3]) != 2 {
		return netip.AddrPort{}, 0, fmt.Errorf("bad state %q", fields[3])
	}
	return netip.AddrPortFrom(addr, uint16(port)), int(state), nil
}

// parseProcNetAddr decodes an address of 8 (IPv4) or 32 (IPv6) hex digits
// as /proc/net/tcp[6] prints it: each 32-bit word in host byte order.
func parseProcNetAddr(text []byte) (netip.Addr, error) {
	if len(text) != 8 && len(text) != 32 {
		return netip.Addr{}, fmt.Errorf("address %q: %d hex digits, want 8 or 32", text, len(text))
	}
	var words [16]byte
	if _, err := hex.Decode(words[:], text); err != nil {
		return netip.Addr{}, fmt.Errorf("address %q: %w", text, err)
	}
	var ip [16]byte
	for i := 0; i < len(text)/2; i += 4 {
		binary.NativeEndian.PutUint32(ip[i:], binary.BigEndian.Uint32(words[i:]))
	}
	if len(text) == 8 {
		return netip.AddrFrom4([4]byte(ip[:4])), nil
	}
	return netip.AddrFrom16(ip), nil
}
