package h1

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
)

// bigHead is a request head of about n bytes in fields of about 220
// bytes, as a slow client with large cookies sends.
func bigHead(n int) string {
	var b strings.Builder
	b.WriteString("GET /big HTTP/1.1\r\nHost: lb.test\r\n")
	for i := 0; b.Len() < n-2; i++ {
		fmt.Fprintf(&b, "X-Field-%02d: %s\r\n", i, strings.Repeat("v", min(200, max(1, n-b.Len()-20))))
	}
	b.WriteString("\r\n")
	return b.String()
}

// trickle yields s in pieces of at most n bytes, one per Read, as a slow
// connection does.
type trickle struct {
	s string
	n int
}

func (t *trickle) Read(p []byte) (int, error) {
	if len(t.s) == 0 {
		return 0, io.EOF
	}
	k := copy(p[:min(len(p), t.n)], t.s)
	t.s = t.s[k:]
	return k, nil
}

// allocated returns the bytes allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestArenaGrowsAsBytesArrive: reading a large head into a new Request
// allocates about the head's size for its arena, however the bytes
// arrive: the arena grows by chunks as they come, and never copies what it
// holds to a larger array (which would leave the older ones held by the
// fields that point into them).
func TestArenaGrowsAsBytesArrive(t *testing.T) {
	head := bigHead(14700)
	nFields := strings.Count(head, "\r\n") - 2
	// What the fields' slice allocates as it grows, one field at a time.
	var fields []Field
	fieldsBytes := allocated(func() {
		for range nFields {
			fields = append(fields, Field{})
		}
	})
	for _, piece := range []int{len(head), 8192, 1460, 100} {
		t.Run(fmt.Sprintf("reads of %d", piece), func(t *testing.T) {
			// The least of three tries: another goroutine's allocations
			// (the runtime's, the testing package's) count in TotalAlloc
			// too, and can only add.
			n := uint64(math.MaxUint64)
			for range 3 {
				br := bufio.NewReaderSize(nil, 8192)
				var r Request
				var err error
				n = min(n, allocated(func() {
					br.Reset(&trickle{head, piece})
					err = ReadRequest(br, &r, Limits{MaxHeaderBytes: 64 << 10})
				}))
				if err != nil {
					t.Fatal(err)
				}
				if len(r.Fields) != nFields {
					t.Fatalf("%d fields, want %d", len(r.Fields), nFields)
				}
			}
			arena := n - min(n, fieldsBytes)
			t.Logf("%d-byte head in reads of %d: %d bytes allocated, %d of them for the arena", len(head), piece, n, arena)
			if limit := uint64(len(head))*5/4 + minChunk; arena > limit {
				t.Errorf("reading a %d-byte head allocated %d bytes besides the fields' %d, over %d",
					len(head), arena, fieldsBytes, limit)
			}
		})
	}
}

// TestArenaReuse: a Request that reads heads like the last reads them
// without allocating, small or large, arriving whole or in pieces; Trim
// keeps the storage of a small head and drops that of a large one.
func TestArenaReuse(t *testing.T) {
	for _, tc := range []struct {
		name  string
		head  string
		piece int
	}{
		{"browser request whole", browserRequest, 8192},
		{"browser request in pieces", browserRequest, 60},
		{"large head whole", bigHead(14700), 8192},
		{"large head in pieces", bigHead(14700), 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReaderSize(nil, 8192)
			var r Request
			var in trickle
			read := func() {
				in = trickle{tc.head, tc.piece}
				br.Reset(&in)
				if err := ReadRequest(br, &r, Limits{MaxHeaderBytes: 64 << 10}); err != nil {
					t.Fatal(err)
				}
				r.Add("X-Forwarded-For", []byte("192.0.2.1")) // as the proxy does
			}
			read()
			read()
			if n := testing.AllocsPerRun(20, read); n != 0 {
				t.Errorf("%v allocations per head once grown, want 0", n)
			}
			r.Trim(4096)
			if kept := cap(r.buf) > 0; kept == (len(tc.head) > 4096) {
				t.Errorf("after Trim(4096) of a %d-byte head the arena keeps %d bytes", len(tc.head), cap(r.buf))
			}
		})
	}
}

// TestArenaSlicesStayValid: fields read into earlier chunks, values that
// Add copies from them and the request line keep their bytes while later
// lines and fields go into new chunks.
func TestArenaSlicesStayValid(t *testing.T) {
	head := bigHead(20000)
	br := bufio.NewReaderSize(&trickle{head, 333}, 4096)
	var r Request
	if err := ReadRequest(br, &r, Limits{MaxHeaderBytes: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	for i := range r.Fields {
		r.Add("X-Copy", r.Fields[i].Value)
	}
	if string(r.Method) != "GET" || string(r.Target) != "/big" {
		t.Errorf("request line %q %q", r.Method, r.Target)
	}
	var rebuilt strings.Builder
	rebuilt.WriteString("GET /big HTTP/1.1\r\n")
	n := len(r.Fields) / 2
	for i, f := range r.Fields[:n] {
		fmt.Fprintf(&rebuilt, "%s: %s\r\n", f.Name, f.Value)
		if c := r.Fields[n+i]; string(c.Name) != "X-Copy" || string(c.Value) != string(f.Value) {
			t.Fatalf("field %d: the copy of %q is %q: %q", i, f.Value, c.Name, c.Value)
		}
	}
	rebuilt.WriteString("\r\n")
	if rebuilt.String() != head {
		t.Error("the fields read do not rebuild the head")
	}
}
