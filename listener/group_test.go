package listener

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
)

// wantGroup checks GroupSize(ln) and GroupSizeAt(addr).
func wantGroup(t *testing.T, ln *net.TCPListener, addr string, want int) {
	t.Helper()
	if ln != nil {
		got, err := GroupSize(ln)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("GroupSize(%s) = %d, want %d", ln.Addr(), got, want)
		}
	}
	got, err := GroupSizeAt(addr)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("GroupSizeAt(%s) = %d, want %d", addr, got, want)
	}
}

func TestGroupSize(t *testing.T) {
	first := bindT(t, "127.0.0.1:0")
	port := portOf(first)
	addr := "127.0.0.1:" + port
	wantGroup(t, first, addr, 1)

	second := bindT(t, addr)
	wantGroup(t, second, addr, 2)
	third := bindT(t, addr)
	wantGroup(t, first, addr, 3)

	// Another port and another address on the same port are other groups.
	other := bindT(t, "127.0.0.1:0")
	wantGroup(t, other, "127.0.0.1:"+portOf(other), 1)
	wildcard := bindT(t, "0.0.0.0:"+port)
	wantGroup(t, wildcard, "0.0.0.0:"+port, 1)
	if hasIPv6() {
		v6 := bindT(t, "[::1]:"+port)
		wantGroup(t, v6, "[::1]:"+port, 1)
		wantGroup(t, nil, ":"+port, 0)
		dual := bindT(t, ":"+port)
		wantGroup(t, dual, ":"+port, 1)
		wantGroup(t, nil, "[::1]:"+port, 1)
	}
	wantGroup(t, first, addr, 3)

	third.Close()
	wantGroup(t, first, addr, 2)
	second.Close()
	wantGroup(t, first, addr, 1)
	first.Close()
	wantGroup(t, nil, addr, 0)
}

func TestGroupSizeClosed(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	ln.Close()
	if _, err := GroupSize(ln); err == nil {
		t.Fatal("GroupSize of a closed listener succeeded")
	}
}

// littleEndian reports whether this machine stores words little end first,
// as the literal /proc lines below assume.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

func TestParseProcNetTCPLine(t *testing.T) {
	if !littleEndian {
		t.Skip("the literal lines are from a little-endian machine")
	}
	tests := []struct {
		line  string
		addr  string
		state int
	}{
		{
			line:  "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0",
			addr:  "127.0.0.1:8080",
			state: 0x0A,
		},
		{
			line:  "  12: 0F02000A:0016 0A00020F:D2F0 01 00000000:00000000 02:00000A2B 00000000  1000        0 99 2 0000000000000000 20 4 30 10 -1",
			addr:  "10.0.2.15:22",
			state: 0x01,
		},
		{
			line:  "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0",
			addr:  "[::1]:8080",
			state: 0x0A,
		},
		{
			line:  "   1: B80D0120000000000000000001000000:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0",
			addr:  "[2001:db8::1]:443",
			state: 0x0A,
		},
		{
			line:  "   2: 0000000000000000FFFF00000100007F:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0",
			addr:  "[::ffff:127.0.0.1]:80",
			state: 0x0A,
		},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			addr, state, err := parseProcNetTCPLine([]byte(tt.line))
			if err != nil {
				t.Fatal(err)
			}
			if want := netip.MustParseAddrPort(tt.addr); addr != want {
				t.Errorf("address %s, want %s", addr, want)
			}
			if state != tt.state {
				t.Errorf("state %02X, want %02X", state, tt.state)
			}
		})
	}
}

func TestParseProcNetTCPLineErrors(t *testing.T) {
	for _, line := range []string{
		"",
		"  sl  local_address rem_address   st tx_queue",
		"0: 0100007F 00000000:0000 0A",
		"0: 0100007F:1F9 00000000:0000 0A",
		"0: 0100007F:1F900 00000000:0000 0A",
		"0: 0100007:1F90 00000000:0000 0A",
		"0: 0100007G:1F90 00000000:0000 0A",
		"0: 0100007F:1F90 00000000:0000 A",
		"0: 0100007F:1F90 00000000:0000 ZZ",
		"0: 0100007F:1F90",
	} {
		if addr, state, err := parseProcNetTCPLine([]byte(line)); err == nil {
			t.Errorf("parseProcNetTCPLine(%q) = %s, %d, want an error", line, addr, state)
		}
	}
}

// formatProcNetAddr prints ap the way /proc/net/tcp[6] does on this machine.
func formatProcNetAddr(ap netip.AddrPort) string {
	raw := ap.Addr().AsSlice()
	var b strings.Builder
	for i := 0; i < len(raw); i += 4 {
		fmt.Fprintf(&b, "%08X", binary.NativeEndian.Uint32(raw[i:]))
	}
	fmt.Fprintf(&b, ":%04X", ap.Port())
	return b.String()
}

func FuzzParseProcNetTCPLine(f *testing.F) {
	f.Add("   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0")
	f.Add("   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0")
	f.Add("0: 0100007F:1F90 x 01")
	f.Fuzz(func(t *testing.T, line string) {
		addr, state, err := parseProcNetTCPLine([]byte(line))
		if err != nil {
			return
		}
		if state < 0 || state > 0xFF {
			t.Fatalf("state %d out of range", state)
		}
		again, _, err := parseProcNetTCPLine([]byte("0: " + formatProcNetAddr(addr) + " 0 " + fmt.Sprintf("%02X", state)))
		if err != nil {
			t.Fatalf("reparsing %s: %v", addr, err)
		}
		if again != addr {
			t.Fatalf("round trip: %s became %s", addr, again)
		}
	})
}
