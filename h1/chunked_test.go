package h1

import (
	"bufio"
	"bytes"
	"errors"
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
		cw.Close()
		bw.Flush()
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
