package httpproxy

import (
	"testing"
	"time"
)

// TestForwardUnwritableRequestSparesServer: a request lb cannot write
// (lb's checks let it through, or a header rule made it so) is the
// client's error, answered 400; nothing reaches the server, and neither the
// passive check nor the server's error count hears of it.
func TestForwardUnwritableRequestSparesServer(t *testing.T) {
	s := newPoolServer(t, answer)
	be, srv, obs := newPoolBackend(t, s.ln.Addr().String())
	sc, server := pooled(t, be, srv, s)
	x, cl, _ := newPoolExchange(t, be, sc, "GET /ok HTTP/1.1\r\nHost: lb\r\n\r\n", nil)
	x.req.Target = []byte("/a b") // as an HTTP/2 :path once came through
	if x.forward() {
		t.Fatal("forward reported a response")
	}
	if cl.status != 400 {
		t.Errorf("the client got %d, want 400", cl.status)
	}
	if n := obs.count(); n != 0 {
		t.Errorf("the passive check heard %d errors, want none", n)
	}
	if st := srv.Stats(); st.Errors != 0 {
		t.Errorf("the server has %d errors, want none", st.Errors)
	}
	// lb closed its connection without writing: the server reads end of
	// file, not a request.
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := server.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the server read %d bytes (%v), want end of file", n, err)
	}
}
