package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"lb/config"
	"lb/proxy"
)

// newLogger returns lb's logger: JSON lines on w, or readable console output
// when w is a terminal.
func newLogger(w io.Writer, level string) (zerolog.Logger, error) {
	lvl, err := parseLevel(level)
	if err != nil {
		return zerolog.Nop(), err
	}
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	zerolog.DurationFieldUnit = time.Millisecond
	if f, ok := w.(*os.File); ok && isTerminal(f) {
		w = zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"}
	}
	return zerolog.New(w).Level(lvl).With().Timestamp().Int("pid", os.Getpid()).Logger(), nil
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// listener is one bound address of a frontend.
type listener struct {
	f  *proxy.Frontend
	ln *net.TCPListener
}

// serve binds every listener, then proxies until SIGINT or SIGTERM.
func serve(ctx context.Context, cfg *config.Config, p *proxy.Proxy, log zerolog.Logger) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	lns, err := bindAll(ctx, cfg, p)
	if err != nil {
		log.Error().Err(err).Msg("cannot start")
		return &exitError{code: exitFailure}
	}
	logStart(log, p, lns)

	var wg sync.WaitGroup
	for _, l := range lns {
		wg.Add(1)
		go acceptLoop(ctx, l, log, &wg)
	}
	<-ctx.Done()
	log.Info().Msg("stopping: signal received")
	wg.Wait()
	return nil
}

// acceptLoop serves one listener until ctx is done.
func acceptLoop(ctx context.Context, l listener, log zerolog.Logger, wg *sync.WaitGroup) {
	defer wg.Done()
	if err := l.f.Serve(ctx, l.ln); err != nil {
		log.Error().Err(err).Str("frontend", l.f.Name).Str("address", l.ln.Addr().String()).Msg("listener failed")
	}
}

// bindAll binds every frontend address, or none: on an error it closes what
// it bound and names the frontend and address that failed.
func bindAll(ctx context.Context, cfg *config.Config, p *proxy.Proxy) ([]listener, error) {
	var lns []listener
	for i, f := range p.Frontends {
		for _, addr := range f.Binds {
			ln, err := bind(ctx, addr)
			if err != nil {
				for _, l := range lns {
					l.ln.Close()
				}
				return nil, fmt.Errorf("%s: frontend %q: %w", cfg.Frontends[i].Pos.Key("bind"), f.Name, err)
			}
			lns = append(lns, listener{f: f, ln: ln})
		}
	}
	return lns, nil
}

// bind listens on one "host:port". An IPv4 or IPv6 literal binds that family
// only; an empty host binds every address of both families.
func bind(ctx context.Context, addr string) (*net.TCPListener, error) {
	network := "tcp"
	if host, _, err := net.SplitHostPort(addr); err == nil {
		if a, err := netip.ParseAddr(host); err == nil {
			network = "tcp6"
			if a.Is4() {
				network = "tcp4"
			}
		}
	}
	var lc net.ListenConfig
	// Go listens with MPTCP by default where the kernel has it; lb wants
	// plain TCP sockets, which splice(2) without a fallback check.
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("cannot bind %s: %s", addr, bindHint(err))
	}
	return ln.(*net.TCPListener), nil
}

// bindHint explains a bind failure in an operator's words.
func bindHint(err error) string {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return err.Error()
	}
	switch errno {
	case syscall.EADDRINUSE:
		return "address already in use (another program listens there: see 'ss -ltnp')"
	case syscall.EACCES:
		return "permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
	case syscall.EADDRNOTAVAIL:
		return "address not available (no interface of this machine has it)"
	}
	return errno.Error()
}

// logStart writes the start-up line that names every listener and backend.
func logStart(log zerolog.Logger, p *proxy.Proxy, lns []listener) {
	fronts := zerolog.Arr()
	for _, f := range p.Frontends {
		addrs := zerolog.Arr()
		for _, l := range lns {
			if l.f == f {
				addrs.Str(l.ln.Addr().String())
			}
		}
		fronts.Dict(zerolog.Dict().Str("name", f.Name).Array("bind", addrs).
			Str("backend", f.Backend.Name()).Int("maxconn", f.MaxConn))
	}
	backs := zerolog.Arr()
	for _, b := range p.Backends {
		servers := zerolog.Arr()
		for _, s := range b.Pool.Servers {
			d := zerolog.Dict().Str("name", s.Name).Str("address", s.Addr).Int("weight", s.Weight)
			if s.MaxConn > 0 {
				d.Int64("maxconn", s.MaxConn)
			}
			if s.Backup {
				d.Bool("backup", true)
			}
			servers.Dict(d)
		}
		backs.Dict(zerolog.Dict().Str("name", b.Name()).Str("balance", b.Pool.Algorithm).Array("servers", servers))
	}
	log.Info().Str("version", version).Array("frontends", fronts).Array("backends", backs).Msg("lb started")
}
