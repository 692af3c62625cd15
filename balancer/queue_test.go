package balancer

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fullPool returns a pool of servers with maxconn 1 each, every slot taken.
func fullPool(t *testing.T, algorithm string, n int) (*Pool, []*Server) {
	t.Helper()
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = NewServer(string(rune('a'+i)), "10.0.0.1:80", 1, 1, false)
	}
	p, err := NewPool("q", algorithm, servers)
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		if p.Pick(&Request{}) == nil {
			t.Fatal("a free slot was not picked")
		}
	}
	if s := p.Pick(&Request{}); s != nil {
		t.Fatalf("picked %s from a full pool", s.Name)
	}
	return p, servers
}

// queued starts a waiter and returns once it is in the queue; the server
// it gets (or nil) arrives on the channel.
func queued(t *testing.T, p *Pool, deadline time.Time, done <-chan struct{}) <-chan *Server {
	t.Helper()
	before := p.Queued()
	got := make(chan *Server, 1)
	go func() { got <- p.Wait(&Request{}, deadline, done) }()
	waitUntil(t, func() bool { return p.Queued() == before+1 })
	return got
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("condition not met within 5s")
		}
	}
}

func recv(t *testing.T, ch <-chan *Server) *Server {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter was not woken within 5s")
		return nil
	}
}

func TestQueueFirstComeFirstServed(t *testing.T) {
	p, servers := fullPool(t, "roundrobin", 1)
	a := servers[0]
	far := time.Now().Add(time.Minute)
	w1 := queued(t, p, far, nil)
	w2 := queued(t, p, far, nil)
	w3 := queued(t, p, far, nil)

	a.Release()
	if s := recv(t, w1); s != a {
		t.Fatalf("first waiter got %v, want a", nameOf(s))
	}
	// The slot went to the queue: a newcomer finds the server still full.
	if s := p.Pick(&Request{}); s != nil {
		t.Fatalf("a newcomer took %s ahead of two waiters", s.Name)
	}
	if a.Active() != 1 || a.Total() != 2 {
		t.Fatalf("active %d, total %d after a hand-over; want 1 and 2", a.Active(), a.Total())
	}
	a.Release()
	if s := recv(t, w2); s != a {
		t.Fatalf("second waiter got %v, want a", nameOf(s))
	}
	select {
	case s := <-w3:
		t.Fatalf("third waiter got %v with no slot free", nameOf(s))
	default:
	}
	a.Release()
	if s := recv(t, w3); s != a {
		t.Fatalf("third waiter got %v, want a", nameOf(s))
	}
	a.Release()
	if a.Active() != 0 || p.Queued() != 0 {
		t.Fatalf("active %d, queued %d at the end; want 0 and 0", a.Active(), p.Queued())
	}
}

func TestQueueGivesUp(t *testing.T) {
	p, servers := fullPool(t, "leastconn", 2)
	start := time.Now()
	if s := p.Wait(&Request{}, start.Add(50*time.Millisecond), nil); s != nil {
		t.Fatalf("got %s from a full pool", s.Name)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("gave up after %v, before the 50ms deadline", d)
	}
	done := make(chan struct{})
	w := queued(t, p, time.Now().Add(time.Minute), done)
	close(done)
	if s := recv(t, w); s != nil {
		t.Fatalf("got %s after done closed", s.Name)
	}
	if p.Queued() != 0 {
		t.Fatalf("%d still queued after both gave up", p.Queued())
	}
	// Nobody waits: a release frees the slot.
	servers[0].Release()
	if servers[0].Active() != 0 {
		t.Fatalf("active %d after a release with nobody queued", servers[0].Active())
	}
}

// A server that takes no new requests (drained here) does not hand its
// slot to the queue, but another server's free slot goes to the waiter.
func TestQueueSkipsServerNotTakingRequests(t *testing.T) {
	p, servers := fullPool(t, "roundrobin", 2)
	a, b := servers[0], servers[1]
	b.SetAdmin(AdminDrain)
	w := queued(t, p, time.Now().Add(time.Minute), nil)
	b.Release()
	select {
	case s := <-w:
		t.Fatalf("waiter got %v from a drained server", nameOf(s))
	case <-time.After(20 * time.Millisecond):
	}
	if b.Active() != 0 {
		t.Fatalf("drained server: active %d after release, want 0", b.Active())
	}
	a.Release()
	if s := recv(t, w); s != a {
		t.Fatalf("waiter got %v, want a", nameOf(s))
	}
}

// A server that comes back up or is set ready takes waiting requests at
// once; one that gains weight, at the pool's Refresh.
func TestQueueWokenWhenServerComesBack(t *testing.T) {
	for _, tc := range []struct {
		name          string
		before, after func(*Server)
		// refresh: the change takes effect at the pool's Refresh (weights);
		// else at once, with no Refresh.
		refresh bool
	}{
		{"health", func(s *Server) { s.SetUp(false) }, func(s *Server) { s.SetUp(true) }, false},
		{"admin", func(s *Server) { s.SetAdmin(AdminMaint) }, func(s *Server) { s.SetAdmin(AdminReady) }, false},
		{"weight", func(s *Server) { _ = s.SetWeight(0) }, func(s *Server) { _ = s.SetWeight(1) }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, servers := fullPool(t, "roundrobin", 2)
			a, b := servers[0], servers[1]
			tc.before(b)
			p.Refresh()
			b.Release() // b's slot is free, but b takes no requests
			w := queued(t, p, time.Now().Add(time.Minute), nil)
			tc.after(b)
			if tc.refresh {
				p.Refresh()
			}
			if s := recv(t, w); s != b {
				t.Fatalf("waiter got %v, want b", nameOf(s))
			}
			a.Release()
			b.Release()
		})
	}
}

// Many requests compete for few slots: no server ever holds more than its
// maxconn, every request is served, and nothing is left over.
func TestQueueConcurrent(t *testing.T) {
	const servers, workers, rounds = 3, 16, 200
	srvs := make([]*Server, servers)
	for i := range srvs {
		srvs[i] = NewServer(string(rune('a'+i)), "10.0.0.1:80", 1, 2, false)
	}
	p, err := NewPool("q", "leastconn", srvs)
	if err != nil {
		t.Fatal(err)
	}
	var over, served atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				r := &Request{Hash: uint64(w*rounds + i)}
				s := p.Pick(r)
				if s == nil {
					s = p.Wait(r, time.Now().Add(time.Minute), nil)
				}
				if s == nil {
					t.Error("a request was not served within a minute")
					return
				}
				if s.Active() > s.MaxConn {
					over.Add(1)
				}
				served.Add(1)
				s.Release()
			}
		}()
	}
	wg.Wait()
	if over.Load() > 0 {
		t.Errorf("a server held more than maxconn %d times", over.Load())
	}
	if served.Load() != workers*rounds {
		t.Errorf("served %d, want %d", served.Load(), workers*rounds)
	}
	for _, s := range srvs {
		if s.Active() != 0 {
			t.Errorf("%s: active %d at the end", s.Name, s.Active())
		}
	}
	if p.Queued() != 0 {
		t.Errorf("%d left in the queue", p.Queued())
	}
}
