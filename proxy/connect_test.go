package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"lb/balancer"
)

// fakeDialer fails the dials to the servers named in fail and records
// every dial.
type fakeDialer struct {
	fail   map[string]bool
	dialed []string
}

func (d *fakeDialer) DialServer(s *balancer.Server) error {
	d.dialed = append(d.dialed, s.Name)
	if d.fail[s.Name] {
		return errors.New("refused by " + s.Name)
	}
	return nil
}

// observed records what an Observer hears.
type observed struct {
	mu   sync.Mutex
	errs map[string][]error
}

func (o *observed) ObserveConn(s *balancer.Server, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.errs == nil {
		o.errs = map[string][]error{}
	}
	o.errs[s.Name] = append(o.errs[s.Name], err)
}

// TestConnect runs the shared connect loop of TCP sessions and HTTP
// exchanges against fixed pools, with dials that fail by server.
func TestConnect(t *testing.T) {
	type want struct {
		end      End
		server   string // "" for none
		dialed   []string
		attempts int
		logged   int // "connect failed" lines
	}
	tests := []struct {
		name    string
		servers []string // "first" balancing: picked in this order
		down    []string
		fail    []string
		sticky  string
		retries int
		want    want
	}{
		{name: "first server", servers: []string{"a", "b"}, retries: 3,
			want: want{end: EndNone, server: "a", dialed: []string{"a"}, attempts: 1}},
		{name: "retry on another server", servers: []string{"a", "b"}, fail: []string{"a"}, retries: 3,
			want: want{end: EndNone, server: "b", dialed: []string{"a", "b"}, attempts: 2, logged: 1}},
		{name: "retries run out", servers: []string{"a", "b", "c"}, fail: []string{"a", "b", "c"}, retries: 1,
			want: want{end: EndConnectFailed, dialed: []string{"a", "b"}, attempts: 2, logged: 2}},
		{name: "a backend of one server retries it", servers: []string{"a"}, fail: []string{"a"}, retries: 2,
			want: want{end: EndConnectFailed, dialed: []string{"a", "a", "a"}, attempts: 3, logged: 3}},
		{name: "no server up", servers: []string{"a", "b"}, down: []string{"a", "b"}, retries: 3,
			want: want{end: EndNoServer}},
		{name: "sticky server first", servers: []string{"a", "b"}, sticky: "b", retries: 3,
			want: want{end: EndNone, server: "b", dialed: []string{"b"}, attempts: 1}},
		{name: "sticky server down", servers: []string{"a", "b"}, down: []string{"b"}, sticky: "b", retries: 3,
			want: want{end: EndNone, server: "a", dialed: []string{"a"}, attempts: 1}},
		{name: "sticky server fails", servers: []string{"a", "b"}, fail: []string{"b"}, sticky: "b", retries: 3,
			want: want{end: EndNone, server: "a", dialed: []string{"b", "a"}, attempts: 2, logged: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var servers []*balancer.Server
			for _, n := range tc.servers {
				servers = append(servers, srv(n, "127.0.0.1:1", 1))
			}
			pool, err := balancer.NewPool("app", "first", servers)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.down {
				pool.Lookup(n).SetUp(false)
			}
			pool.Refresh()
			obs := &observed{}
			b := &Backend{Pool: pool, Retries: tc.retries, Observer: obs}
			d := &fakeDialer{fail: map[string]bool{}}
			for _, n := range tc.fail {
				d.fail[n] = true
			}
			c := &Connecting{}
			if tc.sticky != "" {
				c.Sticky = pool.Lookup(tc.sticky)
			}
			logs := &logBuffer{}
			log := zerolog.New(logs)

			end := b.Connect(c, d, "web", &log)

			got := want{end: end, dialed: d.dialed, attempts: c.Attempts, logged: len(logs.lines(t, "connect failed"))}
			if c.Server != nil {
				got.server = c.Server.Name
			}
			if got.end != tc.want.end || got.server != tc.want.server || !slices.Equal(got.dialed, tc.want.dialed) ||
				got.attempts != tc.want.attempts || got.logged != tc.want.logged {
				t.Errorf("Connect = %+v, want %+v", got, tc.want)
			}
			if (c.Err != nil) != (len(tc.want.dialed) > 1 || tc.want.end == EndConnectFailed) {
				t.Errorf("Err = %v after dials %v", c.Err, got.dialed)
			}
			// Failed dials are counted, observed and given back; a dial
			// that worked is the caller's to observe and release.
			for _, s := range servers {
				fails := 0
				for _, n := range d.dialed {
					if n == s.Name && d.fail[n] {
						fails++
					}
				}
				if got := s.Stats().Errors; got != uint64(fails) {
					t.Errorf("server %s counts %d errors, want %d", s.Name, got, fails)
				}
				if got := len(obs.errs[s.Name]); got != fails {
					t.Errorf("server %s observed %d times, want %d", s.Name, got, fails)
				}
				active := int64(0)
				if s == c.Server {
					active = 1
				}
				if got := s.Active(); got != active {
					t.Errorf("server %s has %d active, want %d", s.Name, got, active)
				}
			}
			for i, l := range logs.lines(t, "connect failed") {
				if l["frontend"] != "web" || l["backend"] != "app" || l["attempt"] != float64(i+1) {
					t.Errorf("log line %d: %v", i, l)
				}
			}
		})
	}
}

// TestConnectQueue: with every server full, Connect waits in the queue
// for QueueTimeout, or until Done closes, and takes a slot given back
// meanwhile.
func TestConnectQueue(t *testing.T) {
	full := func(t *testing.T, queue time.Duration) (*Backend, *balancer.Server) {
		s := balancer.NewServer("a", "127.0.0.1:1", 1, 1, false)
		pool, err := balancer.NewPool("app", "roundrobin", []*balancer.Server{s})
		if err != nil {
			t.Fatal(err)
		}
		if pool.Pick(&balancer.Request{}) != s {
			t.Fatal("cannot fill the server")
		}
		return &Backend{Pool: pool, Retries: 3, QueueTimeout: queue}, s
	}
	log := zerolog.Nop()

	t.Run("timeout", func(t *testing.T) {
		b, _ := full(t, 50*time.Millisecond)
		start := time.Now()
		if end := b.Connect(&Connecting{}, &fakeDialer{}, "web", &log); end != EndQueueTimeout {
			t.Errorf("Connect = %v, want %v", end, EndQueueTimeout)
		}
		if d := time.Since(start); d < 50*time.Millisecond {
			t.Errorf("gave up after %v, before the queue timeout", d)
		}
	})
	t.Run("no queue", func(t *testing.T) {
		b, _ := full(t, 0)
		if end := b.Connect(&Connecting{}, &fakeDialer{}, "web", &log); end != EndNoServer {
			t.Errorf("Connect = %v, want %v", end, EndNoServer)
		}
	})
	t.Run("done", func(t *testing.T) {
		b, _ := full(t, time.Minute)
		done := make(doneChan)
		close(done)
		if end := b.Connect(&Connecting{Gone: done}, &fakeDialer{}, "web", &log); end != EndQueueTimeout {
			t.Errorf("Connect = %v, want %v", end, EndQueueTimeout)
		}
	})
	t.Run("slot freed", func(t *testing.T) {
		b, s := full(t, time.Minute)
		time.AfterFunc(20*time.Millisecond, s.Release)
		c := &Connecting{}
		if end := b.Connect(c, &fakeDialer{}, "web", &log); end != EndNone || c.Server != s {
			t.Errorf("Connect = %v, server %v, want %v on a", end, c.Server, EndNone)
		}
	})
}

// TestFrontendWithoutHandler: a frontend with no handler closes what it
// accepts.
func TestFrontendWithoutHandler(t *testing.T) {
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &Frontend{Name: "web"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Serve(ctx, ln)
	}()
	defer func() {
		cancel()
		<-done
		f.Wait()
	}()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("read %d bytes, %v: want the connection closed", n, err)
	}
}

// doneChan is a Doner: the channel itself.
type doneChan chan struct{}

func (d doneChan) Done() <-chan struct{} { return d }
