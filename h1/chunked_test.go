package h1

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestChunkedRoundTrip(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	tests := []struct {
		name   string
		writes [][]byte
	}{
		{"empty body", nil},
		{"one chunk", [][]byte{[]byte("hello")}},
		{"empty writes skipped", [][]byte{{}, []byte("a"), {}, []byte("bc")}},
		{"sizes around hex digits", [][]byte{big[:15], big[:16], big[:255], big[:256], big[:4095], big[:4096]}},
		{"large chunk", [][]byte{big}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			bw := bufio.NewWriterSize(&buf, 64)
			var cw ChunkedWriter
			cw.Reset(bw)
			var want []byte
			for _, p := range tt.writes {
				n, err := cw.Write(p)
				if err != nil || n != len(p) {
					t.Fatalf("Write = %d, %v", n, err)
				}
				want = append(want, p...)
			}
			if err := cw.Close(); err != nil {
				t.Fatal(err)
			}
			if err := cw.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if _, err := cw.Write([]byte("x")); err == nil {
				t.Error("Write after Close did not fail")
			}
			bw.WriteString("NEXT")
			bw.Flush()
			for _, size := range []int{16, 4096} {
				br := bufio.NewReaderSize(bytes.NewReader(buf.Bytes()), size)
				var cr ChunkedReader
				cr.Reset(br, Limits{})
				got, err := io.ReadAll(&cr)
				if err != nil {
					t.Fatalf("buffer %d: %v", size, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("buffer %d: read %d bytes, want %d", size, len(got), len(want))
				}
				if rest, _ := io.ReadAll(br); string(rest) != "NEXT" {
					t.Errorf("buffer %d: left %q after the body, want %q", size, rest, "NEXT")
				}
			}
		})
	}
}

func TestChunkedWriterFormat(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	var cw ChunkedWriter
	cw.Reset(bw)
	cw.Write([]byte("hello"))
	cw.Write(bytes.Repeat([]byte("x"), 26))
	cw.Close()
	if buf.Len() != 0 {
		t.Errorf("ChunkedWriter flushed %q", buf.String())
	}
	bw.Flush()
	want := "5\r\nhello\r\n1a\r\n" + strings.Repeat("x", 26) + "\r\n0\r\n\r\n"
	if buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
}

func TestChunkedReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
		rest string // left in the reader after the body
	}{
		{"simple", "5\r\nhello\r\n0\r\n\r\n", "hello", ""},
		{"several chunks", "1\r\na\r\n2\r\nbc\r\n0\r\n\r\nNEXT", "abc", "NEXT"},
		{"upper-case hex", "A\r\n0123456789\r\n0\r\n\r\n", "0123456789", ""},
		{"leading zeros", "0005\r\nhello\r\n000\r\n\r\n", "hello", ""},
		{"extensions", "5;name=value;other\r\nhello\r\n0;last=\"yes, it is\"\r\n\r\n", "hello", ""},
		{"whitespace before extension", "5 \t;a=b\r\nhello\r\n0 ;x\r\n\r\n", "hello", ""},
		{"whitespace after size", "5  \r\nhello\r\n0\r\n\r\n", "hello", ""},
		{"trailers", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other: d\r\n\r\nNEXT", "hello", "NEXT"},
		{"trailer with bare LF", "5\r\nhello\r\n0\r\nX-T: 1\n\n", "hello", ""},
		{"empty body", "0\r\n\r\nNEXT", "", "NEXT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				br := bufio.NewReaderSize(strings.NewReader(tt.in), size)
				var cr ChunkedReader
				cr.Reset(br, Limits{})
				got, err := io.ReadAll(&cr)
				if err != nil {
					t.Fatalf("buffer %d: %v", size, err)
				}
				if string(got) != tt.want {
					t.Errorf("buffer %d: read %q, want %q", size, got, tt.want)
				}
				if rest, _ := io.ReadAll(br); string(rest) != tt.rest {
					t.Errorf("buffer %d: left %q, want %q", size, rest, tt.rest)
				}
				if n, err := cr.Read(make([]byte, 1)); n != 0 || err != io.EOF {
					t.Errorf("buffer %d: Read after the end = %d, %v", size, n, err)
				}
			}
		})
	}
}

func TestChunkedReaderErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		lim    Limits
		status int   // an *Error of this status, if not 0
		err    error // else this error
	}{
		{"bad hex", "5x\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"no size", "\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"negative size", "-5\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"plus sign", "+5\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"overflow", "8000000000000000\r\nx\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"overflow by many digits", "fffffffffffffffff\r\nx\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"missing CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"LF only after data", "5\r\nhello\n0\r\n\r\n", Limits{}, 400, nil},
		{"data longer than size", "3\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"bare LF after size", "5\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"bare CR after size", "5\rhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"bare LF in extension", "5;a\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"CTL in extension", "5;a\x00b\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"size line too long", "5;" + strings.Repeat("e", maxChunkLine) + "\r\nhello\r\n0\r\n\r\n", Limits{}, 400, nil},
		{"bad trailer", "0\r\nX-T : 1\r\n\r\n", Limits{}, 400, nil},
		{"obs-fold in trailer", "0\r\nX-T: 1\r\n 2\r\n\r\n", Limits{}, 400, nil},
		{"trailer section too large", "0\r\nX-T: " + strings.Repeat("t", 200) + "\r\n\r\n", Limits{MaxHeaderBytes: 100}, 431, nil},
		{"too many trailers", "0\r\nA: 1\r\nB: 2\r\n\r\n", Limits{MaxHeaders: 1}, 431, nil},
		{"end mid size", "5", Limits{}, 0, io.ErrUnexpectedEOF},
		{"end mid data", "5\r\nhel", Limits{}, 0, io.ErrUnexpectedEOF},
		{"end before CRLF", "5\r\nhello", Limits{}, 0, io.ErrUnexpectedEOF},
		{"end mid CRLF", "5\r\nhello\r", Limits{}, 0, io.ErrUnexpectedEOF},
		{"end before last chunk", "5\r\nhello\r\n", Limits{}, 0, io.ErrUnexpectedEOF},
		{"end in trailers", "0\r\nX: y\r\n", Limits{}, 0, io.ErrUnexpectedEOF},
		{"end before the final CRLF", "0\r\n", Limits{}, 0, io.ErrUnexpectedEOF},
		{"nothing", "", Limits{}, 0, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				var cr ChunkedReader
				cr.Reset(bufio.NewReaderSize(strings.NewReader(tt.in), size), tt.lim)
				_, err := io.ReadAll(&cr)
				if tt.status != 0 {
					checkError(t, err, tt.status, "")
				} else if err != tt.err {
					t.Errorf("buffer %d: err = %v, want %v", size, err, tt.err)
				}
				if _, again := cr.Read(make([]byte, 1)); again != err {
					t.Errorf("buffer %d: error not sticky: %v then %v", size, err, again)
				}
			}
		})
	}
}

func TestChunkedUnset(t *testing.T) {
	var cr ChunkedReader
	if _, err := cr.Read(make([]byte, 1)); err == nil {
		t.Error("Read before Reset did not fail")
	}
	var cw ChunkedWriter
	if _, err := cw.Write([]byte("x")); err == nil {
		t.Error("Write before Reset did not fail")
	}
	if err := cw.Close(); err == nil {
		t.Error("Close before Reset did not fail")
	}
	if err := cw.CloseTrailer(headOf("X-T: 1")); err == nil {
		t.Error("CloseTrailer before Reset did not fail")
	}
	if tr := cr.Trailer(); tr != nil {
		t.Errorf("Trailer before Reset = %v, want nil", tr)
	}
}

// TestChunkedReaderDoesNotBlock checks that Read returns the data of a
// chunk without waiting for the CRLF after it or for the next chunk.
func TestChunkedReaderDoesNotBlock(t *testing.T) {
	pr, pw := io.Pipe()
	defer pr.Close()
	var cr ChunkedReader
	cr.Reset(bufio.NewReader(pr), Limits{})
	go func() {
		pw.Write([]byte("5\r\nhello"))
		time.Sleep(50 * time.Millisecond)
		pw.Write([]byte("\r\n3\r\nabc\r\n0\r\n\r\n"))
		pw.Close()
	}()
	done := make(chan string)
	go func() {
		p := make([]byte, 100)
		n, _ := cr.Read(p)
		done <- string(p[:n])
	}()
	select {
	case got := <-done:
		if got != "hello" {
			t.Fatalf("first Read = %q", got)
		}
	case <-time.After(40 * time.Millisecond):
		t.Fatal("first Read waits for what follows the chunk's data")
	}
	rest, err := io.ReadAll(&cr)
	if err != nil || string(rest) != "abc" {
		t.Errorf("rest = %q, %v", rest, err)
	}
}

// TestChunkedReaderReadError checks that an error of the connection comes
// out as it is.
func TestChunkedReaderReadError(t *testing.T) {
	boom := errors.New("boom")
	var cr ChunkedReader
	cr.Reset(bufio.NewReader(&errReader{"5\r\nhel", boom}), Limits{})
	got, err := io.ReadAll(&cr)
	if string(got) != "hel" || !errors.Is(err, boom) {
		t.Errorf("read %q, %v; want %q, %v", got, err, "hel", boom)
	}
}

func TestChunkedAllocs(t *testing.T) {
	body := "5\r\nhello\r\n1a;x=y\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: t\r\n\r\n"
	sr := strings.NewReader(body)
	br := bufio.NewReader(sr)
	var cr ChunkedReader
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	var cw ChunkedWriter
	p := make([]byte, 64)
	run := func() {
		sr.Reset(body)
		br.Reset(sr)
		cr.Reset(br, Limits{})
		out.Reset()
		bw.Reset(&out)
		cw.Reset(bw)
		for {
			n, err := cr.Read(p)
			cw.Write(p[:n])
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		cw.CloseTrailer(cr.Trailer())
		bw.Flush()
	}
	run()
	if !strings.HasSuffix(out.String(), "0\r\nX-T: t\r\n\r\n") {
		t.Fatalf("wrote %q, want it to end with the trailer", out.String())
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func TestChunkedReaderTrailer(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the trailer fields, "|"-separated
	}{
		{"none", "5\r\nhello\r\n0\r\n\r\n", ""},
		{"one", "5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n", "X-Checksum: abc"},
		{"several, order and case kept", "0\r\nx-a: 1\r\nX-B:2\r\nX-A:  3 \r\n\r\n", "x-a: 1|X-B: 2|X-A: 3"},
		{"empty value", "0\r\nX-E:\r\n\r\n", "X-E: "},
		{"bare LF in the section", "0\r\nX-T: 1\n\n", "X-T: 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				var cr ChunkedReader
				cr.Reset(bufio.NewReaderSize(strings.NewReader(tt.in+"NEXT"), size), Limits{})
				if tr := cr.Trailer(); tr != nil {
					t.Fatalf("Trailer before the end = %q, want nil", fieldStrings(tr))
				}
				if _, err := io.ReadAll(&cr); err != nil {
					t.Fatalf("buffer %d: %v", size, err)
				}
				tr := cr.Trailer()
				if tr == nil {
					t.Fatalf("buffer %d: Trailer after the end is nil", size)
				}
				if got := strings.Join(fieldStrings(tr), "|"); got != tt.want {
					t.Errorf("buffer %d: trailer %q, want %q", size, got, tt.want)
				}
				cr.Reset(bufio.NewReader(strings.NewReader("0\r\n\r\n")), Limits{})
				if tr := cr.Trailer(); tr != nil {
					t.Errorf("buffer %d: Trailer after Reset = %q, want nil", size, fieldStrings(tr))
				}
				if _, err := io.ReadAll(&cr); err != nil {
					t.Fatal(err)
				}
				if tr := cr.Trailer(); tr == nil || len(tr.Fields) != 0 {
					t.Errorf("buffer %d: the next body's trailer holds the last one's", size)
				}
			}
		})
	}
}

// TestChunkedReaderTrailerErrors checks that a bad or oversized trailer
// section is an error (400, 431), after which there is no Trailer.
func TestChunkedReaderTrailerErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		lim    Limits
		status int
	}{
		{"space before colon", "5\r\nhello\r\n0\r\nX-T : 1\r\n\r\n", Limits{}, 400},
		{"no colon", "0\r\nX-T\r\n\r\n", Limits{}, 400},
		{"bad name", "0\r\nX(T): 1\r\n\r\n", Limits{}, 400},
		{"control character in value", "0\r\nX-T: a\x00b\r\n\r\n", Limits{}, 400},
		{"bare CR in value", "0\r\nX-T: a\rb\r\n\r\n", Limits{}, 400},
		{"obs-fold", "0\r\nX-T: 1\r\n 2\r\n\r\n", Limits{}, 400},
		{"section over max_header_bytes", "0\r\nX-A: " + strings.Repeat("a", 60) + "\r\nX-B: " + strings.Repeat("b", 60) + "\r\n\r\n",
			Limits{MaxHeaderBytes: 100}, 431},
		{"one line over max_header_bytes", "0\r\nX-T: " + strings.Repeat("t", 5000) + "\r\n\r\n", Limits{MaxHeaderBytes: 1024}, 431},
		{"more than max_headers", "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Limits{MaxHeaders: 2}, 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{16, 4096} {
				var cr ChunkedReader
				cr.Reset(bufio.NewReaderSize(strings.NewReader(tt.in), size), tt.lim)
				_, err := io.ReadAll(&cr)
				checkError(t, err, tt.status, "trailer section")
				if tr := cr.Trailer(); tr != nil {
					t.Errorf("buffer %d: Trailer after %v = %q, want nil", size, err, fieldStrings(tr))
				}
			}
		})
	}
	// Limits at their edge: a section that fits is read.
	in := "0\r\nA: 1\r\nB: 2\r\n\r\n"
	var cr ChunkedReader
	cr.Reset(bufio.NewReader(strings.NewReader(in)), Limits{MaxHeaders: 2, MaxHeaderBytes: len(in) - 3})
	if _, err := io.ReadAll(&cr); err != nil {
		t.Fatalf("a trailer section within the limits: %v", err)
	}
	if got := len(cr.Trailer().Fields); got != 2 {
		t.Errorf("%d trailer fields, want 2", got)
	}
}

func TestChunkedWriterTrailer(t *testing.T) {
	tests := []struct {
		name    string
		trailer *Head
		want    string
	}{
		{"nil", nil, "5\r\nhello\r\n0\r\n\r\n"},
		{"empty", &Head{}, "5\r\nhello\r\n0\r\n\r\n"},
		{"fields", headOf("X-Checksum: abc", "x-other: d e", "X-Empty: "),
			"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nx-other: d e\r\nX-Empty: \r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			var cw ChunkedWriter
			cw.Reset(bw)
			cw.Write([]byte("hello"))
			if err := cw.CloseTrailer(tt.trailer); err != nil {
				t.Fatal(err)
			}
			if err := cw.CloseTrailer(headOf("X-Again: 1")); err != nil {
				t.Fatalf("second CloseTrailer: %v", err)
			}
			if err := cw.Close(); err != nil {
				t.Fatalf("Close after CloseTrailer: %v", err)
			}
			if _, err := cw.Write([]byte("x")); err == nil {
				t.Error("Write after CloseTrailer did not fail")
			}
			if buf.Len() != 0 {
				t.Errorf("CloseTrailer flushed %q", buf.String())
			}
			bw.Flush()
			if buf.String() != tt.want {
				t.Errorf("wrote %q, want %q", buf.String(), tt.want)
			}
		})
	}
}

// TestChunkedWriterBadTrailer checks that CloseTrailer refuses a field
// that would break the framing, writes nothing and stays open.
func TestChunkedWriterBadTrailer(t *testing.T) {
	for name, tr := range map[string]*Head{
		"CRLF in value":  headOf("X-A: a\r\n\r\nGET /smuggled HTTP/1.1"),
		"LF in value":    headOf("X-A: a\nX-B: b"),
		"NUL in value":   headOf("X-A: a\x00"),
		"bad name":       headOf("X A: 1"),
		"empty name":     {Fields: []Field{{Name: nil, Value: []byte("v")}}},
		"colon in name":  headOf("X:A: 1"),
		"one good field": headOf("X-Good: 1", "X-A: a\rb"),
	} {
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			bw := bufio.NewWriter(&buf)
			var cw ChunkedWriter
			cw.Reset(bw)
			cw.Write([]byte("hi"))
			bw.Flush()
			before := buf.Len()
			if err := cw.CloseTrailer(tr); err == nil || !strings.Contains(err.Error(), "trailer") {
				t.Fatalf("CloseTrailer = %v, want an error about the trailer section", err)
			}
			bw.Flush()
			if buf.Len() != before {
				t.Fatalf("wrote %q despite the error", buf.String()[before:])
			}
			if err := cw.Close(); err != nil {
				t.Fatal(err)
			}
			bw.Flush()
			if got := buf.String(); got != "2\r\nhi\r\n0\r\n\r\n" {
				t.Errorf("wrote %q", got)
			}
		})
	}
}

// TestChunkedTrailerRoundTrip writes bodies with trailers, then reads them
// back.
func TestChunkedTrailerRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	var cw ChunkedWriter
	for i, tr := range []*Head{
		headOf("X-Checksum: sha256=abc", "Grpc-Status: 0", "Grpc-Message: "),
		nil,
		headOf("X-Long: " + strings.Repeat("v", 3000)),
	} {
		cw.Reset(bw)
		cw.Write([]byte(fmt.Sprintf("body %d", i)))
		if err := cw.CloseTrailer(tr); err != nil {
			t.Fatal(err)
		}
	}
	bw.Flush()
	for _, size := range []int{16, 4096} {
		br := bufio.NewReaderSize(bytes.NewReader(buf.Bytes()), size)
		var cr ChunkedReader
		for i, want := range []string{"X-Checksum: sha256=abc|Grpc-Status: 0|Grpc-Message: ", "", "X-Long: " + strings.Repeat("v", 3000)} {
			cr.Reset(br, Limits{})
			body, err := io.ReadAll(&cr)
			if err != nil || string(body) != fmt.Sprintf("body %d", i) {
				t.Fatalf("buffer %d, body %d: %q, %v", size, i, body, err)
			}
			if got := strings.Join(fieldStrings(cr.Trailer()), "|"); got != want {
				t.Errorf("buffer %d, body %d: trailer %q, want %q", size, i, got, want)
			}
		}
		if br.Buffered() != 0 {
			t.Errorf("buffer %d: %d bytes left", size, br.Buffered())
		}
	}
}
