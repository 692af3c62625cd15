package headerblock

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// frames returns a framer that reads the block made of fields, in a
// HEADERS frame and CONTINUATION frames of at most frag bytes each, and
// the HEADERS frame read from it.
func frames(t *testing.T, enc *hpack.Encoder, ebuf *bytes.Buffer, frag int, fields ...hpack.HeaderField) (*http2.Framer, *http2.HeadersFrame) {
	t.Helper()
	ebuf.Reset()
	for _, f := range fields {
		_ = enc.WriteField(f)
	}
	block := ebuf.Bytes()
	var wire bytes.Buffer
	w := http2.NewFramer(&wire, nil)
	n := min(frag, len(block))
	_ = w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:n], EndHeaders: n == len(block)})
	for block = block[n:]; len(block) > 0; block = block[n:] {
		n = min(frag, len(block))
		_ = w.WriteContinuation(1, n == len(block), block[:n])
	}
	r := http2.NewFramer(nil, &wire)
	f, err := r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return r, f.(*http2.HeadersFrame)
}

// TestRead: a block over several frames decodes whole; fields past the
// budget are left out while the table stays in step; CONTINUATION frames
// far over the budget, and bytes HPACK cannot decode, end the connection.
func TestRead(t *testing.T) {
	var ebuf bytes.Buffer
	enc := hpack.NewEncoder(&ebuf)
	r := NewReader(200)
	hf := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }

	fr, f := frames(t, enc, &ebuf, 5, hf(":status", "200"), hf("x-a", "one"), hf("x-b", "two"))
	if err := r.Read(fr, f); err != nil || r.Truncated || len(r.Fields) != 3 || r.Fields[2] != hf("x-b", "two") {
		t.Fatalf("read %v truncated %v, %v; want the 3 fields", r.Fields, r.Truncated, err)
	}

	// Over the budget: left out, but indexed by both sides' tables.
	fr, f = frames(t, enc, &ebuf, 100, hf("x-a", "one"), hf("x-big", strings.Repeat("b", 150)), hf("x-c", "three"))
	if err := r.Read(fr, f); err != nil || !r.Truncated || len(r.Fields) != 1 {
		t.Fatalf("read %v truncated %v, %v; want x-a alone, truncated", r.Fields, r.Truncated, err)
	}
	fr, f = frames(t, enc, &ebuf, 100, hf("x-c", "three"))
	if err := r.Read(fr, f); err != nil || r.Truncated || len(r.Fields) != 1 || r.Fields[0] != hf("x-c", "three") {
		t.Fatalf("read %v truncated %v, %v; want x-c from the table", r.Fields, r.Truncated, err)
	}

	// A flood: CONTINUATION frames that go on once the budget is spent.
	var flood []hpack.HeaderField
	for range 10 {
		flood = append(flood, hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 30), Sensitive: true})
	}
	fr, f = frames(t, enc, &ebuf, 10, flood...)
	var be *Error
	if err := r.Read(fr, f); !errors.As(err, &be) || be.Code != http2.ErrCodeProtocol {
		t.Errorf("flood: %v, want a PROTOCOL_ERROR", err)
	}

	// An index past both tables.
	var wire bytes.Buffer
	_ = http2.NewFramer(&wire, nil).WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: []byte{0x80 | 0x7f, 0x7f}, EndHeaders: true})
	fr = http2.NewFramer(nil, &wire)
	g, _ := fr.ReadFrame()
	if err := NewReader(200).Read(fr, g.(*http2.HeadersFrame)); !errors.As(err, &be) || be.Code != http2.ErrCodeCompression {
		t.Errorf("bad index: %v, want a COMPRESSION_ERROR", err)
	}
}
