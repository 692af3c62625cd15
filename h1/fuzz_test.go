package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// fuzzLimits are small, for the fuzzer to reach them.
var fuzzLimits = Limits{MaxHeaderBytes: 2048, MaxHeaders: 20}

// checkReadError fails unless err is one a read may return for input from
// memory.
func checkReadError(t *testing.T, err error) {
	t.Helper()
	var e *Error
	switch {
	case err == io.EOF, err == io.ErrUnexpectedEOF:
	case errors.As(err, &e):
		switch e.Status {
		case 400, 414, 431, 501, 505:
		default:
			t.Fatalf("*Error with status %d: %v", e.Status, e)
		}
		if e.Reason == "" {
			t.Fatal("*Error without reason")
		}
	default:
		t.Fatalf("unexpected error %v", err)
	}
}

// sameFields reports whether a and b have the same fields.
func sameFields(a, b *Head) bool {
	if len(a.Fields) != len(b.Fields) {
		return false
	}
	for i := range a.Fields {
		if !bytes.Equal(a.Fields[i].Name, b.Fields[i].Name) || !bytes.Equal(a.Fields[i].Value, b.Fields[i].Value) {
			return false
		}
	}
	return true
}

// checkBody checks the invariants of a Body.
func checkBody(t *testing.T, b Body, response bool) {
	t.Helper()
	switch b.Kind {
	case BodyLength:
		if b.Length <= 0 {
			t.Fatalf("BodyLength with length %d", b.Length)
		}
		return
	case BodyNone, BodyChunked:
	case BodyUntilClose:
		if !response {
			t.Fatal("request with BodyUntilClose")
		}
	default:
		t.Fatalf("body kind %d", b.Kind)
	}
	if b.Length != 0 {
		t.Fatalf("%v body with length %d", b.Kind, b.Length)
	}
}

var fuzzRequestSeeds = []string{
	browserRequest,
	"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"\r\nPOST /a HTTP/1.1\nHost: h\nContent-Length: 5, 5\n\nhello",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding : chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
	"GET http://u:p@h:80/p?q#f HTTP/1.1\r\nHost: h\r\n\r\n",
	"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n",
	"OPTIONS * HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\nUpgrade: x\r\nExpect: 100-continue\r\n\r\n",
	"GET / HTTP/2.0\r\n\r\n",
}

func FuzzReadRequest(f *testing.F) {
	for _, s := range fuzzRequestSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r, small Request
		err := ReadRequest(bufio.NewReaderSize(bytes.NewReader(data), 4096), &r, fuzzLimits)
		// The size of the buffer must not matter.
		errSmall := ReadRequest(bufio.NewReaderSize(bytes.NewReader(data), 16), &small, fuzzLimits)
		if (err == nil) != (errSmall == nil) {
			t.Fatalf("buffer 4096: %v; buffer 16: %v", err, errSmall)
		}
		if err != nil {
			checkReadError(t, err)
			return
		}
		if !bytes.Equal(r.Method, small.Method) || !bytes.Equal(r.Target, small.Target) || !sameFields(&r.Head, &small.Head) || r.Body != small.Body {
			t.Fatal("buffer size changes the parse")
		}
		checkBody(t, r.Body, false)
		_, _ = r.Path(), r.Host()
		if r.Minor == 0 && !r.Has("Host") {
			return // written as HTTP/1.1, it would lack Host
		}

		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := WriteRequestHead(w, &r); err != nil {
			t.Fatalf("writing a parsed head: %v", err)
		}
		w.Flush()
		var again Request
		if err := ReadRequest(bufio.NewReader(&buf), &again, Limits{MaxHeaderBytes: 4 * len(data), MaxHeaders: fuzzLimits.MaxHeaders}); err != nil {
			t.Fatalf("reading back %q: %v", buf.String(), err)
		}
		if !bytes.Equal(r.Method, again.Method) || !bytes.Equal(r.Target, again.Target) {
			t.Fatalf("request line %q %q read back as %q %q", r.Method, r.Target, again.Method, again.Target)
		}
		if !sameFields(&r.Head, &again.Head) {
			t.Fatalf("fields %q read back as %q", fieldStrings(&r.Head), fieldStrings(&again.Head))
		}
		if r.Body != again.Body {
			t.Fatalf("body %+v read back as %+v", r.Body, again.Body)
		}
		if r.Minor == 1 && (r.KeepAlive != again.KeepAlive || r.Upgrade != again.Upgrade || r.Expect100 != again.Expect100) {
			t.Fatalf("flags %v %v %v read back as %v %v %v", r.KeepAlive, r.Upgrade, r.Expect100, again.KeepAlive, again.Upgrade, again.Expect100)
		}
		if !bytes.Equal(r.Path(), again.Path()) || !bytes.Equal(r.Host(), again.Host()) {
			t.Fatal("path or host changed")
		}
	})
}

func FuzzReadResponse(f *testing.F) {
	seeds := []string{
		typicalResponse,
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nbody",
		"HTTP/1.1 200\r\nContent-Length: 3, 3\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	}
	for _, s := range seeds {
		for _, m := range []string{"GET", "HEAD", "CONNECT"} {
			f.Add(m, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, method string, data []byte) {
		var r, small Response
		err := ReadResponse(bufio.NewReaderSize(bytes.NewReader(data), 4096), &r, fuzzLimits, []byte(method))
		errSmall := ReadResponse(bufio.NewReaderSize(bytes.NewReader(data), 16), &small, fuzzLimits, []byte(method))
		if (err == nil) != (errSmall == nil) {
			t.Fatalf("buffer 4096: %v; buffer 16: %v", err, errSmall)
		}
		if err != nil {
			checkReadError(t, err)
			return
		}
		if r.Status != small.Status || !bytes.Equal(r.Reason, small.Reason) || !sameFields(&r.Head, &small.Head) || r.Body != small.Body {
			t.Fatal("buffer size changes the parse")
		}
		checkBody(t, r.Body, true)
		if r.Body.Kind == BodyUntilClose && r.KeepAlive {
			t.Fatal("keep-alive with a body until close")
		}

		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		if err := WriteResponseHead(w, &r); err != nil {
			t.Fatalf("writing a parsed head: %v", err)
		}
		w.Flush()
		var again Response
		if err := ReadResponse(bufio.NewReader(&buf), &again, Limits{MaxHeaderBytes: 4*len(data) + 64, MaxHeaders: fuzzLimits.MaxHeaders}, []byte(method)); err != nil {
			t.Fatalf("reading back %q: %v", buf.String(), err)
		}
		if r.Status != again.Status || len(r.Reason) > 0 && !bytes.Equal(r.Reason, again.Reason) {
			t.Fatalf("status %d %q read back as %d %q", r.Status, r.Reason, again.Status, again.Reason)
		}
		if !sameFields(&r.Head, &again.Head) {
			t.Fatalf("fields %q read back as %q", fieldStrings(&r.Head), fieldStrings(&again.Head))
		}
		if r.Body != again.Body {
			t.Fatalf("body %+v read back as %+v", r.Body, again.Body)
		}
	})
}

func FuzzChunkedReader(f *testing.F) {
	seeds := []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n",
		"A\r\n0123456789\r\n0\r\n\r\n",
		"ffffffffffffffff\r\n",
		"5\r\nhelloXX0\r\n\r\n",
		"0\r\n\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		decode := func(size int) (body, rest []byte, trailer *Head, err error) {
			br := bufio.NewReaderSize(bytes.NewReader(data), size)
			var cr ChunkedReader
			cr.Reset(br, fuzzLimits)
			body, err = io.ReadAll(&cr)
			rest, _ = io.ReadAll(br)
			if tr := cr.Trailer(); tr != nil {
				trailer = new(Head)
				for _, f := range tr.Fields {
					trailer.Add(string(f.Name), f.Value)
				}
			}
			return body, rest, trailer, err
		}
		got, rest, trailer, err := decode(4096)
		gotSmall, restSmall, trailerSmall, errSmall := decode(16)
		if (err == nil) != (errSmall == nil) {
			t.Fatalf("buffer 4096: %v; buffer 16: %v", err, errSmall)
		}
		if err != nil {
			var e *Error
			if err != io.ErrUnexpectedEOF && !errors.As(err, &e) {
				t.Fatalf("unexpected error %v", err)
			}
			if trailer != nil {
				t.Fatalf("a trailer after %v", err)
			}
			return
		}
		if !bytes.Equal(got, gotSmall) || !bytes.Equal(rest, restSmall) {
			t.Fatal("buffer size changes the decoding")
		}
		if trailer == nil || !slices.Equal(fieldStrings(trailer), fieldStrings(trailerSmall)) {
			t.Fatal("buffer size changes the trailer")
		}
		if len(got)+len(rest) > len(data) {
			t.Fatalf("decoded %d bytes and left %d of %d", len(got), len(rest), len(data))
		}

		var buf bytes.Buffer
		w := bufio.NewWriter(&buf)
		var cw ChunkedWriter
		cw.Reset(w)
		if _, err := cw.Write(got); err != nil {
			t.Fatal(err)
		}
		if err := cw.CloseTrailer(trailer); err != nil {
			t.Fatal(err)
		}
		w.Flush()
		var cr ChunkedReader
		cr.Reset(bufio.NewReader(&buf), Limits{})
		again, err := io.ReadAll(&cr)
		if err != nil || !bytes.Equal(again, got) {
			t.Fatalf("re-encoded body read back as %q, %v", again, err)
		}
		if !slices.Equal(fieldStrings(cr.Trailer()), fieldStrings(trailer)) {
			t.Fatalf("re-encoded trailer read back as %q, want %q", fieldStrings(cr.Trailer()), fieldStrings(trailer))
		}
	})
}
