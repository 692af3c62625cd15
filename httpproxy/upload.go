package httpproxy

import (
	"errors"
	"io"
	"sync/atomic"
	"time"
)

// upload is the request body going to the server while the response
// comes back, so that a server that answers as it reads (a streaming
// echo) or before it reads (an early 413) is not stalled by lb: it is
// the goroutine of one exchange, ended by endUpload. A client that fails
// the body interrupts the response.
type upload struct {
	done    chan struct{} // the upload ended; buffered, made once per exchange
	running bool          // started and not yet joined; the exchange's own
	// stop makes the upload end: its next or current read or write fails.
	stop atomic.Bool
	// failed says the client failed the body (went away, stalled, sent too
	// much or bad chunks) while the upload was not stopped: the response
	// reads fail at once.
	failed atomic.Bool
	// The outcome, read after done.
	err        error
	fromClient bool
}

// uploadEnding, when set, runs as an upload ends: tests make the end slow,
// as a busy machine may.
var uploadEnding atomic.Pointer[func()]

// upload sends the body; see the upload type.
func (x *exchange) upload() {
	err, fromClient := x.sendBody()
	if err == nil {
		err = x.sc.bw.Flush()
	}
	x.up.err, x.up.fromClient = err, fromClient
	if err != nil && fromClient && !x.up.stop.Load() {
		x.up.failed.Store(true)
		_ = x.sc.c.SetReadDeadline(time.Unix(1, 0))
	}
	if f := uploadEnding.Load(); f != nil {
		(*f)()
	}
	x.up.done <- struct{}{}
}

// endUpload waits for the upload to end, if one runs; stop makes it end
// at once rather than send the rest of the body.
func (x *exchange) endUpload(stop bool) {
	if !x.up.running {
		return
	}
	if stop {
		select {
		case <-x.up.done:
			x.up.running = false
			return
		default:
		}
		x.up.stop.Store(true)
		x.cl.abortBody()
		_ = x.sc.c.SetWriteDeadline(time.Unix(1, 0))
		<-x.up.done
		x.up.running = false
		if x.up.err == nil {
			// The body had all gone: the connection may serve again,
			// and its next write sets a deadline afresh. So may the
			// client's, whose next request may be arriving: the past
			// deadline abortBody set must not fail its read.
			_ = x.sc.c.SetWriteDeadline(time.Time{})
			x.sw.At = time.Time{}
			x.cl.resumeBody()
		}
		return
	}
	<-x.up.done
	x.up.running = false
}

// sendBody copies the request body to the server, x.bytesIn counting it.
func (x *exchange) sendBody() (err error, fromClient bool) {
	n, err, fromClient := copyBody(&x.sw, x.sc.bw, x.reqBody, x.reqIn, x.f.MaxBodyBytes)
	x.bytesIn = n
	if err == nil && x.reqLen > 0 && n < x.reqLen {
		err, fromClient = io.ErrUnexpectedEOF, true
	}
	if err == nil && x.reqLen < 0 {
		// The body ended with its trailer section (or could not end
		// otherwise): the fields that may be trailers go on.
		tr := x.cl.requestTrailer()
		if tr != nil {
			tr.RemoveDisallowedTrailers()
		}
		err = x.cw.CloseTrailer(tr)
	}
	return err, fromClient
}

// errUploadFailed ends the response of a request whose body the client
// failed to send.
var errUploadFailed = errors.New("the request body failed")
