package listener

import (
	"context"
	"fmt"
	"math"
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// joinPoll is how often Join counts the group while it waits.
const joinPoll = 10 * time.Millisecond

// Joined is a socket that Join added to the reuseport group of an address.
type Joined struct {
	// Listener is the new socket. The caller accepts on it, and closes or
	// drains it in the end.
	Listener *net.TCPListener
	// Index is the socket's position in its group when it joined: what
	// SteerSelf steers to. It stays right until a socket before it leaves
	// the group, when the kernel moves the group's last socket into the
	// freed slot.
	Index int
	// Members is how many sockets listened on the address just before this
	// one joined.
	Members int
	// Crowded reports that more than one socket still listened on the
	// address when Join's maxWait ran out, and Join joined anyway. Steering
	// is then unreliable: once one of the older sockets leaves, the group's
	// indices shift and new connections can land on a socket that is about
	// to close. Callers should warn about it.
	Crowded bool
}

// Join adds a new socket to the reuseport group of addr (see Bind) without
// taking traffic from the socket that serves it yet:
//
//  1. While more than one socket listens on addr (older generations still
//     draining), it waits, counting every 10ms, for at most maxWait; past
//     that it goes on and sets Crowded.
//  2. It binds with Bind.
//  3. If exactly one socket listened before, it attaches a program that
//     steers every new connection to that socket, index 0, until the caller
//     calls SteerSelf.
//
// Until the caller accepts on j.Listener, connections that reach it wait in
// its accept queue; if the caller gives up on the new socket, it should call
// SteerBack and Drain rather than just close it. ctx cancels the wait.
func Join(ctx context.Context, addr string, maxWait time.Duration) (*Joined, error) {
	spec, err := parseBind(addr)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", addr, err)
	}
	members, crowded, err := waitForRoom(ctx, addr, spec, maxWait)
	if err != nil {
		return nil, err
	}
	ln, err := bind(ctx, addr, spec)
	if err != nil {
		return nil, err
	}
	after, err := GroupSize(ln)
	if err != nil {
		ln.Close()
		return nil, err
	}
	// Normally after == members+1 and this socket sits at index members.
	// If a member left in between, the kernel moved this socket (the last)
	// into the freed slot, and after-1 is right; the smaller is the better
	// guess either way.
	j := &Joined{
		Listener: ln,
		Index:    max(0, min(members, after-1)),
		Members:  members,
		Crowded:  crowded,
	}
	if members == 1 {
		if err := Steer(ln, 0); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return j, nil
}

// waitForRoom waits until at most one socket listens on spec's address or
// maxWait passes, and returns the last count and whether it timed out.
func waitForRoom(ctx context.Context, addr string, spec bindSpec, maxWait time.Duration) (members int, crowded bool, err error) {
	deadline := time.Now().Add(maxWait)
	tick := time.NewTicker(joinPoll)
	defer tick.Stop()
	for {
		n, err := countSpec(spec)
		if err != nil {
			return 0, false, fmt.Errorf("listener %s: count group members: %w", addr, err)
		}
		if n <= 1 {
			return n, false, nil
		}
		if !time.Now().Before(deadline) {
			return n, true, nil
		}
		select {
		case <-ctx.Done():
			return 0, false, fmt.Errorf("listener %s: waiting for %d older sockets to close: %w", addr, n-1, ctx.Err())
		case <-tick.C:
		}
	}
}

// SteerSelf sends every new connection to j's own socket, at j.Index.
func (j *Joined) SteerSelf() error { return Steer(j.Listener, j.Index) }

// SteerBack sends every new connection to the socket at index 0, the one
// that served the address when j joined (unless j was Crowded). A new
// generation that aborts after joining calls it, then drains j.Listener.
func (j *Joined) SteerBack() error { return Steer(j.Listener, 0) }

// Steer attaches to ln's reuseport group a classic-BPF program that sends
// every new connection to the group's socket at index (join order; when a
// socket leaves, the kernel moves the last one into its slot). An index
// beyond the group falls back to the kernel's hash. The program belongs to
// the whole group and replaces any earlier one, whichever socket attached
// it. ln must be listening already.
func Steer(ln *net.TCPListener, index int) error {
	return SteerShares(ln, []Share{{Index: index, Weight: 1}})
}

// Share is a part of the new connections for the socket at Index of a
// reuseport group: Weight out of the sum of the weights.
type Share struct {
	Index  int
	Weight uint32
}

// Classic BPF's ancillary load of a random number (SKF_AD_OFF +
// SKF_AD_RANDOM), which x/sys/unix does not name.
const (
	skfAdOff    = -0x1000
	skfAdRandom = 56
)

// maxShares bounds the shares of one program: each takes two instructions.
const maxShares = 64

// SteerShares is Steer for several sockets: each new connection goes to the
// socket at one share's index, picked at random in proportion to the
// weights, as a canary reload needs (a new generation takes a part of the
// new connections, the old one the rest). A share of weight 0 gets none.
func SteerShares(ln *net.TCPListener, shares []Share) error {
	prog, err := sharesProgram(shares)
	if err != nil {
		return fmt.Errorf("listener %s: %w", ln.Addr(), err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	err = control(ln, "setsockopt SO_ATTACH_REUSEPORT_CBPF", func(fd int) error {
		return unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog)
	})
	if err != nil {
		return fmt.Errorf("listener %s: attach steering program (%v): %w", ln.Addr(), shares, err)
	}
	return nil
}

// sharesProgram compiles shares into a classic BPF program: one share
// returns its index; several draw a random number modulo the total weight
// and return the index of the share it falls in.
func sharesProgram(shares []Share) ([]unix.SockFilter, error) {
	var kept []Share
	var total uint64
	for _, sh := range shares {
		if sh.Index < 0 || uint64(sh.Index) > math.MaxUint32 {
			return nil, fmt.Errorf("steering index %d out of range", sh.Index)
		}
		if sh.Weight > 0 {
			kept = append(kept, sh)
			total += uint64(sh.Weight)
		}
	}
	switch {
	case len(kept) == 0:
		return nil, fmt.Errorf("steering: no share with a weight above 0 in %v", shares)
	case len(kept) > maxShares:
		return nil, fmt.Errorf("steering: %d shares, at most %d", len(kept), maxShares)
	case total > math.MaxUint32:
		return nil, fmt.Errorf("steering: the weights add up to %d, over %d", total, uint32(math.MaxUint32))
	case len(kept) == 1:
		return []unix.SockFilter{{Code: unix.BPF_RET | unix.BPF_K, K: uint32(kept[0].Index)}}, nil
	}
	adRandom := int32(skfAdOff + skfAdRandom)
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: uint32(adRandom)},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(total)},
	}
	var upTo uint32
	for _, sh := range kept[:len(kept)-1] {
		upTo += sh.Weight
		// Below upTo: this share; else skip its return.
		prog = append(prog,
			unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K, Jt: 1, Jf: 0, K: upTo},
			unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(sh.Index)})
	}
	return append(prog, unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: uint32(kept[len(kept)-1].Index)}), nil
}
