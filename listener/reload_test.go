package listener

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Bounds of one reload run.
const (
	reloadCount       = 30
	reloadClients     = 8
	reloadMaxConns    = 200000
	reloadMaxDuration = 20 * time.Second
	// reloadEvery is how many connections succeed between two reloads,
	// so that every reload happens under traffic.
	reloadEvery = 100
	// reloadGrace is Drain's grace in the steered runs.
	reloadGrace = 50 * time.Millisecond
)

// load is the client side of the reload test: goroutines that each dial,
// read one byte and close, over and over.
type load struct {
	addr     string
	deadline time.Time
	ok       atomic.Int64
	failed   atomic.Int64
	stopped  atomic.Bool
	wg       sync.WaitGroup

	mu     sync.Mutex
	errors []error // the first few failures
	// slow are the local addresses of the connections whose answer did
	// not come in time: a busy machine, unless no generation accepted
	// them (see runReloads).
	slow []string
	// unconnected counts the dials that timed out: the machine was too
	// busy to complete a handshake, which no socket closed by a reload
	// causes (a closed socket answers with a reset).
	unconnected int
}

// startLoad starts reloadClients clients against addr.
func startLoad(addr string) *load {
	l := &load{addr: addr, deadline: time.Now().Add(reloadMaxDuration)}
	for i := 0; i < reloadClients; i++ {
		l.wg.Add(1)
		go l.client()
	}
	return l
}

// done reports whether the clients should stop.
func (l *load) done() bool {
	return l.stopped.Load() || time.Now().After(l.deadline) || l.ok.Load()+l.failed.Load() >= reloadMaxConns
}

// client is one client goroutine.
func (l *load) client() {
	defer l.wg.Done()
	d := net.Dialer{Timeout: 2 * time.Second}
	for !l.done() {
		local, err := fetchFrom(&d, l.addr)
		if err != nil {
			l.failed.Add(1)
			l.mu.Lock()
			switch {
			case isTimeout(err) && local != "":
				l.slow = append(l.slow, local)
			case isTimeout(err):
				l.unconnected++
			}
			if len(l.errors) < 5 {
				l.errors = append(l.errors, err)
			}
			l.mu.Unlock()
			continue
		}
		l.ok.Add(1)
	}
}

// waitOK waits until n connections have succeeded; false if the clients
// stopped first.
func (l *load) waitOK(n int64) bool {
	for l.ok.Load() < n {
		if l.done() {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// stop stops the clients and waits for them.
func (l *load) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

// reloadStats is the outcome of one reload run.
type reloadStats struct {
	reloads     int
	ok, failed  int64
	took        time.Duration
	firstErrors []error
	// Of the failed: late were accepted by a generation after the client
	// gave up, unconnected never completed their handshake (both: a busy
	// machine); lost is the rest, what reloads lost.
	late, unconnected, lost int64
}

// How runReloads hands over from one generation to the next.
type reloadMode int

const (
	// steerAndDrain: Join, SteerSelf, then Drain the old socket (lb's
	// way without the kernel's migration).
	steerAndDrain reloadMode = iota
	// steerAndClose: Join, SteerSelf, then close the old socket at once
	// (lb's way when tcp_migrate_req is on).
	steerAndClose
	// plain: bind with plain SO_REUSEPORT and close the old socket.
	plain
)

// runReloads serves 127.0.0.1 with one generation after another under
// client load, handing over as mode says.
func runReloads(t *testing.T, mode reloadMode) reloadStats {
	ctx := context.Background()
	start := time.Now()
	j, err := Join(ctx, "127.0.0.1:0", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr := j.Listener.Addr().String()
	var accepted sync.Map // every client address any generation accepted
	cur := startGenerationLogged(j.Listener, &accepted)
	if err := j.SteerSelf(); err != nil {
		t.Fatal(err)
	}
	var (
		old    []*generation
		drains sync.WaitGroup
	)
	defer func() {
		drains.Wait()
		cur.stop()
		for _, g := range old {
			<-g.done
		}
	}()

	l := startLoad(addr)
	reloads := 0
	for ; reloads < reloadCount; reloads++ {
		if !l.waitOK(l.ok.Load() + reloadEvery) {
			t.Errorf("clients stopped after %d reloads (bounds: %d connections, %v)", reloads, reloadMaxConns, reloadMaxDuration)
			break
		}
		prev := cur
		if mode != plain {
			j, err := Join(ctx, addr, 5*time.Second)
			if err != nil {
				t.Error(err)
				break
			}
			if j.Crowded {
				t.Errorf("reload %d: %d sockets still listened after 5s", reloads, j.Members)
			}
			cur = startGenerationLogged(j.Listener, &accepted)
			if err := j.SteerSelf(); err != nil {
				t.Error(err)
			}
			if mode == steerAndClose {
				prev.ln.Close()
				old = append(old, prev)
				continue
			}
			drains.Add(1)
			go func() {
				defer drains.Done()
				if err := Drain(ctx, prev.ln, reloadGrace); err != nil {
					t.Error(err)
				}
			}()
		} else {
			ln, err := Bind(ctx, addr)
			if err != nil {
				t.Error(err)
				break
			}
			cur = startGenerationLogged(ln, &accepted)
			prev.ln.Close()
		}
		old = append(old, prev)
	}
	// Let the last generation serve a little before counting.
	l.waitOK(l.ok.Load() + reloadEvery)
	l.stop()
	// Let the generations accept what is late before telling slow from
	// lost: the last one too drains its queue.
	drains.Wait()
	if err := Drain(ctx, cur.ln, 0); err != nil {
		t.Error(err)
	}
	<-cur.done
	st := reloadStats{
		reloads:     reloads,
		ok:          l.ok.Load(),
		failed:      l.failed.Load(),
		took:        time.Since(start),
		firstErrors: l.errors,
		unconnected: int64(l.unconnected),
	}
	for _, local := range l.slow {
		if _, ok := accepted.Load(local); ok {
			st.late++
		}
	}
	st.lost = st.failed - st.late - st.unconnected
	return st
}

// TestReload is the property the package exists for: reloads that join,
// steer and drain lose no connection. The same loop with plain
// SO_REUSEPORT reloads is run for comparison and only logged.
func TestReload(t *testing.T) {
	if testing.Short() {
		t.Skip("reload runs take a few seconds")
	}
	steered := runReloads(t, steerAndDrain)
	t.Logf("steered: %d reloads, %d connections ok, %d failed (%d answered late, %d never connected: a busy machine), %v",
		steered.reloads, steered.ok, steered.failed, steered.late, steered.unconnected, steered.took.Round(time.Millisecond))
	if steered.lost != 0 {
		t.Errorf("steered reloads lost %d connections (reset, refused, or never accepted); first errors: %v", steered.lost, steered.firstErrors)
	}
	if steered.reloads != reloadCount {
		t.Errorf("steered: only %d of %d reloads ran", steered.reloads, reloadCount)
	}

	plain := runReloads(t, plain)
	t.Logf("plain SO_REUSEPORT: %d reloads, %d connections ok, %d failed, %v; first errors: %v",
		plain.reloads, plain.ok, plain.failed, plain.took.Round(time.Millisecond), plain.firstErrors)
	// Without the kernel's migration, closing a socket of the group
	// resets what is queued on it: plain reloads lose connections (some 3
	// a reload here), which is what steering and draining are for.
	if on, err := MigrateReq(); err == nil && !on && plain.lost == 0 {
		t.Errorf("plain SO_REUSEPORT reloads lost no connection in %d reloads with tcp_migrate_req off: the test no longer shows what steering prevents", plain.reloads)
	}
}

// isTimeout reports whether err is a deadline or dial timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
