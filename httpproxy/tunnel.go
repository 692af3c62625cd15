package httpproxy

import (
	"errors"
	"io"
	"lb/sock"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// tunnel relays bytes both ways after a 101 Switching Protocols, until both
// sides are done, one fails, or both stay idle for the backend's tunnel
// timeout. Bare TCP connections are copied with splice(2).
func (x *exchange) tunnel() {
	cc := x.cl.(*clientConn)
	sc := x.sc
	x.status = 101
	if _, _, err := cc.writeHead(&x.resp, false); err != nil {
		x.drop(false)
		x.clientGone(err)
		return
	}
	if err := cc.bw.Flush(); err != nil {
		x.drop(false)
		x.clientGone(err)
		return
	}
	// Bytes already read past the heads belong to the other side.
	if n := cc.br.Buffered(); n > 0 {
		b, _ := cc.br.Peek(n)
		if _, err := sc.c.Write(b); err != nil {
			x.drop(true)
			x.end, x.err = endServerError, err
			x.finish(false)
			return
		}
		_, _ = cc.br.Discard(n)
	}
	if n := sc.br.Buffered(); n > 0 {
		b, _ := sc.br.Peek(n)
		if _, err := cc.c.Write(b); err != nil {
			x.drop(false)
			x.clientGone(err)
			return
		}
		_, _ = sc.br.Discard(n)
	}
	t := &relay{idle: x.be.TunnelTimeout, start: time.Now()}
	// The bare TCP connections, not their sock wrappers, so that the
	// tunnel splices (TLS ones copy).
	t.conns = [2]net.Conn{sock.Bare(cc.c), sock.Bare(sc.c)}
	t.wg.Add(1)
	go t.pipe(0)
	t.pipe(1)
	t.wg.Wait()
	x.bytesIn, x.bytesOut = t.bytes[0], t.bytes[1]
	x.drop(false)
	x.end = endTunnel
	if e := t.failure.Load(); e != nil {
		x.end = e.(string)
	}
	x.finish(true)
}

// relay is a tunnel: conns[0] is the client, conns[1] the server.
type relay struct {
	conns   [2]net.Conn
	idle    time.Duration
	start   time.Time
	seen    atomic.Int64 // ns since start when bytes last moved
	bytes   [2]int64     // bytes read from each side
	failure atomic.Value // the end, when not a clean close
	once    sync.Once
	wg      sync.WaitGroup
}

// relayChunk bounds one copy round, so that idleness is checked.
const relayChunk = 1 << 20

// pipe copies from conns[from] to the other side until from is done.
func (t *relay) pipe(from int) {
	if from == 0 {
		defer t.wg.Done()
	}
	src, dst := t.conns[from], t.conns[1-from]
	tick := t.idle / 4
	if tick > 0 {
		tick = max(tick, 10*time.Millisecond)
	}
	lr := io.LimitedReader{R: src}
	for {
		if tick > 0 {
			_ = src.SetReadDeadline(time.Now().Add(tick))
			_ = dst.SetWriteDeadline(time.Now().Add(t.idle))
		}
		lr.N = relayChunk
		n, err := io.Copy(dst, &lr)
		t.bytes[from] += n
		if n > 0 {
			t.seen.Store(int64(time.Since(t.start)))
		}
		switch {
		case err == nil && lr.N > 0: // EOF: half-close the other way
			closeWrite(dst)
			return
		case err == nil:
			continue
		case errors.Is(err, os.ErrDeadlineExceeded) && n == 0:
			if time.Since(t.start)-time.Duration(t.seen.Load()) < t.idle {
				continue
			}
			t.abort("tunnel_timeout")
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			continue
		default:
			t.abort([2]string{"client_aborted", "server_error"}[from])
			return
		}
	}
}

// abort ends the tunnel: closing both connections wakes the other pipe.
func (t *relay) abort(end string) {
	t.once.Do(func() {
		t.failure.Store(end)
		_ = t.conns[0].Close()
		_ = t.conns[1].Close()
	})
}

// closeWrite half-closes c when it can, so the peer sees EOF.
func closeWrite(c net.Conn) {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.(closeWriter); ok {
		_ = cw.CloseWrite()
	}
}
