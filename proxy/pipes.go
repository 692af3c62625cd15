package proxy

import (
	"sync"

	"golang.org/x/sys/unix"

	"lb/fdlimit"
)

// Pipes for splice(2). A flow takes one only while it moves a bulk
// transfer and gives it back as soon as its source runs dry, so that a
// connection at rest holds none: a few pipes serve thousands of
// connections.

// pipeSize is the size asked of each pipe's buffer: one splice moves up to
// this much.
const pipeSize = 1 << 20

// maxIdlePipes bounds the pipes kept for reuse; more are closed when given
// back. It is what package fdlimit plans for.
const maxIdlePipes = fdlimit.SplicePipes

// pipe is a pipe's two ends; held is what it holds not yet written out.
type pipe struct {
	r, w int
	held int
}

// pipePool keeps empty pipes for reuse. Its zero value is ready to use.
type pipePool struct {
	mu   sync.Mutex
	idle []*pipe
	open int // pipes open, idle or taken
}

// pipes serves every flow of the process.
var pipes pipePool

// get returns an empty pipe, made when none is idle.
func (pp *pipePool) get() (*pipe, error) {
	pp.mu.Lock()
	if n := len(pp.idle); n > 0 {
		p := pp.idle[n-1]
		pp.idle[n-1] = nil
		pp.idle = pp.idle[:n-1]
		pp.mu.Unlock()
		return p, nil
	}
	pp.open++
	pp.mu.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		pp.mu.Lock()
		pp.open--
		pp.mu.Unlock()
		return nil, err
	}
	// A larger buffer moves more per splice; the default (64 KiB) holds
	// when the system's limit is lower.
	_, _ = unix.FcntlInt(uintptr(fds[1]), unix.F_SETPIPE_SZ, pipeSize)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// put gives p back: kept when it is empty and the pool has room, else
// closed.
func (pp *pipePool) put(p *pipe) {
	pp.mu.Lock()
	if p.held == 0 && len(pp.idle) < maxIdlePipes {
		pp.idle = append(pp.idle, p)
		pp.mu.Unlock()
		return
	}
	pp.open--
	pp.mu.Unlock()
	unix.Close(p.r)
	unix.Close(p.w)
}

// stats returns the pipes open and the idle ones among them.
func (pp *pipePool) stats() (open, idle int) {
	pp.mu.Lock()
	defer pp.mu.Unlock()
	return pp.open, len(pp.idle)
}
