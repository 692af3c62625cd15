package listener

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

func TestSteer(t *testing.T) {
	old := bindT(t, "127.0.0.1:0")
	addr := old.Addr().String()
	nw := bindT(t, addr)

	if err := Steer(nw, 1); err != nil {
		t.Fatal(err)
	}
	dialN(t, addr, 200)
	waitQueueLen(t, nw, 200)
	waitQueueLen(t, old, 0)

	// The program belongs to the group: any member can replace it.
	if err := Steer(nw, 0); err != nil {
		t.Fatal(err)
	}
	dialN(t, addr, 50)
	waitQueueLen(t, old, 50)
	waitQueueLen(t, nw, 200)
}

// SteerShares splits new connections between the group's sockets in
// proportion to the weights: 1 in 4 here, over 400 connections, with wide
// margins (a binomial draw: 100 expected, standard deviation under 9).
func TestSteerShares(t *testing.T) {
	old := bindT(t, "127.0.0.1:0")
	addr := old.Addr().String()
	nw := bindT(t, addr)
	if err := SteerShares(nw, []Share{{Index: 0, Weight: 3}, {Index: 1, Weight: 1}}); err != nil {
		t.Fatal(err)
	}
	const n = 400
	dialN(t, addr, n)
	var toNew, toOld int
	deadline := time.Now().Add(2 * time.Second)
	for {
		var err error
		if toNew, err = QueueLen(nw); err != nil {
			t.Fatal(err)
		}
		if toOld, err = QueueLen(old); err != nil {
			t.Fatal(err)
		}
		if toNew+toOld == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if toNew+toOld != n || toNew < 60 || toNew > 140 {
		t.Fatalf("of %d connections, %d went to the socket with a share of 1 in 4 and %d to the other: want about 100 and 300", n, toNew, toOld)
	}
	// A share of weight 0 gets nothing: all to the new socket now.
	if err := SteerShares(nw, []Share{{Index: 0, Weight: 0}, {Index: 1, Weight: 5}}); err != nil {
		t.Fatal(err)
	}
	dialN(t, addr, 50)
	waitQueueLen(t, nw, toNew+50)
	waitQueueLen(t, old, toOld)
}

func TestSharesProgramErrors(t *testing.T) {
	for _, shares := range [][]Share{nil, {{Index: 0, Weight: 0}}, {{Index: -1, Weight: 1}}, {{Index: 0, Weight: 1 << 31}, {Index: 1, Weight: 1 << 31}}} {
		if _, err := sharesProgram(shares); err == nil {
			t.Errorf("sharesProgram(%v) succeeded", shares)
		}
	}
}

func TestSteerErrors(t *testing.T) {
	ln := bindT(t, "127.0.0.1:0")
	if err := Steer(ln, -1); err == nil {
		t.Error("Steer(ln, -1) succeeded")
	}
	ln.Close()
	err := Steer(ln, 0)
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("Steer on a closed listener: %v, want net.ErrClosed", err)
	}
}

// joinResult is what a Join running in a goroutine returned.
type joinResult struct {
	j   *Joined
	err error
}

// joinAsync runs Join in a goroutine.
func joinAsync(ctx context.Context, addr string, maxWait time.Duration) <-chan joinResult {
	ch := make(chan joinResult, 1)
	go func() {
		j, err := Join(ctx, addr, maxWait)
		ch <- joinResult{j, err}
	}()
	return ch
}

func TestJoinFirst(t *testing.T) {
	j, err := Join(context.Background(), "127.0.0.1:0", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Listener.Close()
	if j.Index != 0 || j.Members != 0 || j.Crowded {
		t.Errorf("Join into an empty group = %+v, want index 0, 0 members, not crowded", *j)
	}
	if err := j.SteerSelf(); err != nil {
		t.Fatal(err)
	}
}

func TestJoinWaitsForThirdMember(t *testing.T) {
	serving := bindT(t, "127.0.0.1:0")
	addr := serving.Addr().String()
	draining := bindT(t, addr)

	start := time.Now()
	ch := joinAsync(context.Background(), addr, 5*time.Second)
	select {
	case r := <-ch:
		if r.j != nil {
			r.j.Listener.Close()
		}
		t.Fatalf("Join returned while two sockets listened: %+v, %v", r.j, r.err)
	case <-time.After(150 * time.Millisecond):
	}
	draining.Close()
	var r joinResult
	select {
	case r = <-ch:
	case <-time.After(2 * time.Second):
		t.Fatal("Join did not return after the third member closed")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	j := r.j
	defer j.Listener.Close()
	if waited := time.Since(start); waited < 150*time.Millisecond {
		t.Errorf("Join returned after %v", waited)
	}
	if j.Crowded || j.Index != 1 || j.Members != 1 {
		t.Errorf("Join = %+v, want index 1, 1 member, not crowded", *j)
	}

	// Traffic stays with the serving socket until SteerSelf.
	dialN(t, addr, 20)
	waitQueueLen(t, serving, 20)
	waitQueueLen(t, j.Listener, 0)
	if err := j.SteerSelf(); err != nil {
		t.Fatal(err)
	}
	dialN(t, addr, 20)
	waitQueueLen(t, j.Listener, 20)
	waitQueueLen(t, serving, 20)
	// An aborting generation gives the traffic back.
	if err := j.SteerBack(); err != nil {
		t.Fatal(err)
	}
	dialN(t, addr, 20)
	waitQueueLen(t, serving, 40)
	waitQueueLen(t, j.Listener, 20)
}

func TestJoinCrowded(t *testing.T) {
	a := bindT(t, "127.0.0.1:0")
	addr := a.Addr().String()
	bindT(t, addr)

	start := time.Now()
	j, err := Join(context.Background(), addr, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	defer j.Listener.Close()
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("Join gave up after %v, want at least 100ms", waited)
	}
	if !j.Crowded || j.Members != 2 || j.Index != 2 {
		t.Errorf("Join = %+v, want crowded, 2 members, index 2", *j)
	}
}

func TestJoinCanceled(t *testing.T) {
	a := bindT(t, "127.0.0.1:0")
	addr := a.Addr().String()
	bindT(t, addr)

	ctx, cancel := context.WithCancel(context.Background())
	ch := joinAsync(ctx, addr, 10*time.Second)
	time.Sleep(30 * time.Millisecond)
	cancel()
	select {
	case r := <-ch:
		if r.j != nil {
			r.j.Listener.Close()
		}
		if !errors.Is(r.err, context.Canceled) {
			t.Fatalf("Join after cancel: %v, want context.Canceled", r.err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Join ignored the canceled context")
	}
}
