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
// HEADERS frame and CONTINUATION frames of at most frag bytes each, what
// it reads from, and the HEADERS frame's header, read from it.
func frames(t *testing.T, enc *hpack.Encoder, ebuf *bytes.Buffer, frag int, fields ...hpack.HeaderField) (*http2.Framer, *bytes.Buffer, http2.FrameHeader) {
	t.Helper()
	ebuf.Reset()
	for _, f := range fields {
		_ = enc.WriteField(f)
	}
	block := ebuf.Bytes()
	wire := new(bytes.Buffer)
	w := http2.NewFramer(wire, nil)
	n := min(frag, len(block))
	_ = w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:n], EndHeaders: n == len(block)})
	for block = block[n:]; len(block) > 0; block = block[n:] {
		n = min(frag, len(block))
		_ = w.WriteContinuation(1, n == len(block), block[:n])
	}
	r := http2.NewFramer(nil, wire)
	fh, err := r.ReadFrameHeader()
	if err != nil {
		t.Fatal(err)
	}
	return r, wire, fh
}

// TestRead: a block over several frames decodes whole; fields past the
// budget are left out while the table stays in step; CONTINUATION frames
// far over the budget, and bytes HPACK cannot decode, end the connection.
func TestRead(t *testing.T) {
	var ebuf bytes.Buffer
	enc := hpack.NewEncoder(&ebuf)
	r := NewReader(200)
	hf := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }

	fr, src, fh := frames(t, enc, &ebuf, 5, hf(":status", "200"), hf("x-a", "one"), hf("x-b", "two"))
	if _, err := r.ReadHeaders(fr, src, fh); err != nil || r.Truncated || len(r.Fields) != 3 || r.Fields[2] != hf("x-b", "two") {
		t.Fatalf("read %v truncated %v, %v; want the 3 fields", r.Fields, r.Truncated, err)
	}

	// Over the budget: left out, but indexed by both sides' tables.
	fr, src, fh = frames(t, enc, &ebuf, 100, hf("x-a", "one"), hf("x-big", strings.Repeat("b", 150)), hf("x-c", "three"))
	if _, err := r.ReadHeaders(fr, src, fh); err != nil || !r.Truncated || len(r.Fields) != 1 {
		t.Fatalf("read %v truncated %v, %v; want x-a alone, truncated", r.Fields, r.Truncated, err)
	}
	fr, src, fh = frames(t, enc, &ebuf, 100, hf("x-c", "three"))
	if _, err := r.ReadHeaders(fr, src, fh); err != nil || r.Truncated || len(r.Fields) != 1 || r.Fields[0] != hf("x-c", "three") {
		t.Fatalf("read %v truncated %v, %v; want x-c from the table", r.Fields, r.Truncated, err)
	}

	// A flood: CONTINUATION frames that go on once the budget is spent.
	var flood []hpack.HeaderField
	for range 10 {
		flood = append(flood, hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("f", 30), Sensitive: true})
	}
	fr, src, fh = frames(t, enc, &ebuf, 10, flood...)
	var be *Error
	if _, err := r.ReadHeaders(fr, src, fh); !errors.As(err, &be) || be.Code != http2.ErrCodeProtocol {
		t.Errorf("flood: %v, want a PROTOCOL_ERROR", err)
	}

	// An index past both tables.
	wire := rawHeaders(3, http2.FlagHeadersEndHeaders, []byte{0x80 | 0x7f, 0x7f})
	fr = http2.NewFramer(nil, wire)
	fh, _ = fr.ReadFrameHeader()
	if _, err := NewReader(200).ReadHeaders(fr, wire, fh); !errors.As(err, &be) || be.Code != http2.ErrCodeCompression {
		t.Errorf("bad index: %v, want a COMPRESSION_ERROR", err)
	}
}

// rawHeaders is a HEADERS frame on stream id with flags and payload, as
// written on the wire, followed by the CONTINUATION frames of cont.
func rawHeaders(id uint32, flags http2.Flags, payload []byte, cont ...[]byte) *bytes.Buffer {
	var wire bytes.Buffer
	w := http2.NewFramer(&wire, nil)
	_ = w.WriteRawFrame(http2.FrameHeaders, flags, id, payload)
	for i, c := range cont {
		var f http2.Flags
		if i == len(cont)-1 {
			f = http2.FlagContinuationEndHeaders
		}
		_ = w.WriteRawFrame(http2.FrameContinuation, f, id, c)
	}
	return &wire
}

// TestReadHeaders: ReadHeaders reads a HEADERS frame's padding and
// priority as x/net's framer does, then its block, CONTINUATION frames
// included; a frame on stream 0, padding longer than the payload and a
// payload too short for its padding length or priority end the
// connection; the framer reads on after a frame read whole.
func TestReadHeaders(t *testing.T) {
	var ebuf bytes.Buffer
	enc := hpack.NewEncoder(&ebuf)
	_ = enc.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
	_ = enc.WriteField(hpack.HeaderField{Name: "x-a", Value: "one"})
	block := bytes.Clone(ebuf.Bytes())

	read := func(wire *bytes.Buffer) (Headers, *Reader, *http2.Framer, error) {
		fr := http2.NewFramer(nil, wire)
		fh, err := fr.ReadFrameHeader()
		if err != nil {
			t.Fatal(err)
		}
		r := NewReader(200)
		h, err := r.ReadHeaders(fr, wire, fh)
		return h, r, fr, err
	}
	prio := []byte{0x80, 0, 0, 5, 16} // exclusive, on stream 5, weight 17
	padded := append(append([]byte{3}, prio...), block...)
	padded = append(padded, 0, 0, 0)
	for _, c := range []struct {
		name    string
		wire    *bytes.Buffer
		h       Headers
		ping    bool // a PING frame follows
		errCode http2.ErrCode
	}{
		{name: "plain", wire: rawHeaders(1, http2.FlagHeadersEndHeaders|http2.FlagHeadersEndStream, block),
			h: Headers{StreamID: 1, EndStream: true}},
		{name: "padded, priority", wire: rawHeaders(3, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded|http2.FlagHeadersPriority, padded),
			h: Headers{StreamID: 3, HasPriority: true, StreamDep: 5}},
		{name: "continued", wire: rawHeaders(5, 0, block[:1], block[1:3], block[3:]), h: Headers{StreamID: 5}, ping: true},
		{name: "stream 0", wire: rawHeaders(0, http2.FlagHeadersEndHeaders, block), errCode: http2.ErrCodeProtocol},
		{name: "padding too long", wire: rawHeaders(1, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, append([]byte{byte(len(block) + 1)}, block...)),
			errCode: http2.ErrCodeProtocol},
		{name: "no padding length", wire: rawHeaders(1, http2.FlagHeadersEndHeaders|http2.FlagHeadersPadded, nil), errCode: http2.ErrCodeFrameSize},
		{name: "short priority", wire: rawHeaders(1, http2.FlagHeadersEndHeaders|http2.FlagHeadersPriority, prio[:4]), errCode: http2.ErrCodeFrameSize},
	} {
		if c.ping {
			_ = http2.NewFramer(c.wire, nil).WritePing(false, [8]byte{1})
		}
		h, r, fr, err := read(c.wire)
		if c.errCode != 0 {
			var be *Error
			if !errors.As(err, &be) || be.Code != c.errCode {
				t.Errorf("%s: %v, want an *Error of %v", c.name, err, c.errCode)
			}
			continue
		}
		if err != nil || h != c.h || len(r.Fields) != 2 || r.Fields[1].Value != "one" {
			t.Errorf("%s: %+v, fields %v, %v; want %+v and the 2 fields", c.name, h, r.Fields, err, c.h)
			continue
		}
		if c.ping {
			if f, err := fr.ReadFrame(); err != nil || f.Header().Type != http2.FramePing {
				t.Errorf("%s: after the block, the framer read %v, %v; want the PING", c.name, f, err)
			}
		}
	}
}

// TestReadHeadersLarge: a HEADERS frame over the default largest frame
// size (a peer may send one when allowed) is read whole, in a buffer the
// Reader does not keep; a small one after it reuses the kept buffer.
func TestReadHeadersLarge(t *testing.T) {
	var ebuf bytes.Buffer
	enc := hpack.NewEncoder(&ebuf)
	long := strings.Repeat("v", 3*maxKeptPayload)
	_ = enc.WriteField(hpack.HeaderField{Name: "x-long", Value: long})
	big := bytes.Clone(ebuf.Bytes())
	ebuf.Reset()
	_ = enc.WriteField(hpack.HeaderField{Name: "x-a", Value: "one"})
	small := bytes.Clone(ebuf.Bytes())

	wire := rawHeaders(1, http2.FlagHeadersEndHeaders, small)
	wire.Write(rawHeaders(3, http2.FlagHeadersEndHeaders, big).Bytes())
	wire.Write(rawHeaders(5, http2.FlagHeadersEndHeaders, small).Bytes())
	fr := http2.NewFramer(nil, wire)
	fr.SetMaxReadFrameSize(1 << 20)
	r := NewReader(1 << 20)
	for i, want := range []string{"one", long, "one"} {
		fh, err := fr.ReadFrameHeader()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.ReadHeaders(fr, wire, fh); err != nil || len(r.Fields) != 1 || r.Fields[0].Value != want {
			t.Fatalf("frame %d: %d fields, %v; want the field of %d bytes", i, len(r.Fields), err, len(want))
		}
		if cap(r.payload) > maxKeptPayload {
			t.Fatalf("frame %d: the Reader keeps a buffer of %d bytes, over %d", i, cap(r.payload), maxKeptPayload)
		}
	}
}
