package httpproxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestUploadEndingLateKeepsTheClient: when the server has the whole body
// and answers before the upload's goroutine is done (a busy machine), the
// exchange stops the upload, which sets the client's read deadline in the
// past; the body had all gone, so the client's next request, pipelined,
// must still be read and served.
func TestUploadEndingLateKeepsTheClient(t *testing.T) {
	slow := func() { time.Sleep(50 * time.Millisecond) }
	uploadEnding.Store(&slow)
	t.Cleanup(func() { uploadEnding.Store(nil) })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f := &Frontend{RequestTimeout: 10 * time.Second, KeepAliveTimeout: time.Minute, ClientTimeout: time.Minute}
	addr, _ := parkFrontendTo(t, f, ln.Addr().String())
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"+
		"GET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	for _, want := range []string{"/a", "/b"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("the response to %s: %v", want, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}
