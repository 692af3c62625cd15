package headerblock

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// decode decodes block with x/net's decoder, its table as a client's
// with a default SETTINGS_HEADER_TABLE_SIZE.
func decode(t *testing.T, block []byte) []hpack.HeaderField {
	t.Helper()
	fields, err := hpack.NewDecoder(4096, nil).DecodeFull(block)
	if err != nil {
		t.Fatalf("decoding %x: %v", block, err)
	}
	return fields
}

// TestBlocksDecode: what lb encodes decodes back the same with x/net's
// decoder, fields the static table holds whole in one byte.
func TestBlocksDecode(t *testing.T) {
	long := strings.Repeat("v", 300) // lengths over a prefix's 127
	tests := []struct {
		name   string
		status int
		fields [][2]string
		want   []string
		size   int // the block's size, when it matters
	}{
		{name: "200 alone", status: 200, want: []string{":status=200"}, size: 1},
		{name: "404 alone", status: 404, want: []string{":status=404"}, size: 1},
		{name: "204 alone", status: 204, want: []string{":status=204"}, size: 1},
		{name: "206 alone", status: 206, want: []string{":status=206"}, size: 1},
		{name: "304 alone", status: 304, want: []string{":status=304"}, size: 1},
		{name: "400 alone", status: 400, want: []string{":status=400"}, size: 1},
		{name: "500 alone", status: 500, want: []string{":status=500"}, size: 1},
		{name: "302", status: 302, want: []string{":status=302"}, size: 5},
		{name: "599", status: 599, want: []string{":status=599"}},
		{name: "response head", status: 200, fields: [][2]string{{"content-type", "text/plain"}, {"content-length", "5"}, {"x-custom", "a b"}, {"www-authenticate", "Basic"}},
			want: []string{":status=200", "content-type=text/plain", "content-length=5", "x-custom=a b", "www-authenticate=Basic"}},
		{name: "long name and value", fields: [][2]string{{"x-" + long, long}, {"set-cookie", long}},
			want: []string{"x-" + long + "=" + long, "set-cookie=" + long}},
		{name: "request", fields: [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "a.example"}, {":path", "/"}, {"te", "trailers"}},
			want: []string{":method=GET", ":scheme=https", ":authority=a.example", ":path=/", "te=trailers"}},
		{name: "request, values out of the table", fields: [][2]string{{":method", "PATCH"}, {":scheme", "http"}, {":path", "/x?y"}},
			want: []string{":method=PATCH", ":scheme=http", ":path=/x?y"}},
		{name: "empty value", fields: [][2]string{{"x-empty", ""}}, want: []string{"x-empty="}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			if tt.status > 0 {
				b = AppendStatus(b, tt.status)
			}
			for i, f := range tt.fields {
				if i%2 == 0 {
					b = AppendField(b, f[0], f[1])
				} else {
					b = AppendField(b, []byte(f[0]), []byte(f[1]))
				}
			}
			got := decode(t, b)
			if len(got) != len(tt.want) {
				t.Fatalf("decoded %v, want %v", got, tt.want)
			}
			for i, f := range got {
				if f.Name+"="+f.Value != tt.want[i] || f.Sensitive {
					t.Errorf("field %d: %v, want %s", i, f, tt.want[i])
				}
			}
			if tt.size > 0 && len(b) != tt.size {
				t.Errorf("block of %d bytes, want %d", len(b), tt.size)
			}
		})
	}
}

// TestTableSizeUpdate: a block that starts with the update decodes with a
// decoder whose allowed table size was lowered to 0, and sets its table
// size to 0; nothing lb writes adds to the table.
func TestTableSizeUpdate(t *testing.T) {
	d := hpack.NewDecoder(4096, nil)
	d.SetAllowedMaxDynamicTableSize(0)
	b := AppendTableSizeUpdate(nil)
	b = AppendStatus(b, 200)
	b = AppendField(b, "content-type", "text/html")
	fields, err := d.DecodeFull(b)
	if err != nil || len(fields) != 2 {
		t.Fatalf("decoded %v, %v; want 2 fields", fields, err)
	}
	// A decoder whose table holds nothing has no entry 62.
	if _, err := d.DecodeFull([]byte{0x80 | 62}); err == nil {
		t.Error("the decoder's table holds an entry after lb's block")
	}
}

func TestAppendAllocatesNothing(t *testing.T) {
	name, value := []byte("x-request-id"), []byte("0123456789abcdef0123456789abcdef")
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() {
		b := AppendStatus(buf[:0], 302)
		b = AppendField(b, name, value)
		b = AppendField(b, "content-type", value)
		_ = AppendField(b, ":path", value)
	}); n != 0 {
		t.Errorf("%v allocations per block, want 0", n)
	}
}

// TestStaticNames: every name of the static table (RFC 7541 Appendix A)
// is written with its index, and decodes back as itself.
func TestStaticNames(t *testing.T) {
	names := strings.Fields(`:authority :method :path :scheme :status accept-charset accept-encoding
		accept-language accept-ranges accept access-control-allow-origin age allow authorization cache-control
		content-disposition content-encoding content-language content-length content-location content-range
		content-type cookie date etag expect expires from host if-match if-modified-since if-none-match if-range
		if-unmodified-since last-modified link location max-forwards proxy-authenticate proxy-authorization range
		referer refresh retry-after server set-cookie strict-transport-security transfer-encoding user-agent vary
		via www-authenticate`)
	for _, name := range names {
		b := AppendField(nil, name, "x")
		if len(b) > 4 { // the index (one or two bytes), then the value ("x")
			t.Errorf("%s: %x, not written with its index", name, b)
		}
		if got := decode(t, b); len(got) != 1 || got[0].Name != name || got[0].Value != "x" {
			t.Errorf("%s: decoded as %v", name, got)
		}
	}
}

// TestWriter: a connection's first block alone starts with the table size
// update; a block larger than the peer's frame size goes out as HEADERS
// and CONTINUATION frames, which a Reader reads back whole.
func TestWriter(t *testing.T) {
	var w Writer
	first := w.Start()
	if len(first) != 1 || first[0] != 0x20 {
		t.Fatalf("first block starts %x, want the table size update to 0 (20)", first)
	}
	if err := w.Write(http2.NewFramer(io.Discard, nil), 1, first, true, 16384); err != nil {
		t.Fatal(err)
	}
	b := w.Start()
	if len(b) != 0 {
		t.Fatalf("second block starts %x, want nothing", b)
	}
	b = AppendStatus(b, 200)
	long := strings.Repeat("v", 100)
	for range 5 {
		b = AppendField(b, "x-long", long)
	}
	var wire bytes.Buffer
	if err := w.Write(http2.NewFramer(&wire, nil), 3, b, false, 64); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(nil, &wire)
	fh, err := fr.ReadFrameHeader()
	if err != nil {
		t.Fatal(err)
	}
	if fh.Type != http2.FrameHeaders || fh.Flags.Has(http2.FlagHeadersEndHeaders) || fh.Flags.Has(http2.FlagHeadersEndStream) || fh.Length != 64 {
		t.Fatalf("first frame: %v; want a 64-byte HEADERS frame that ends nothing", fh)
	}
	r := NewReader(1 << 20)
	if _, err := r.ReadHeaders(fr, &wire, fh); err != nil {
		t.Fatal(err)
	}
	if len(r.Fields) != 6 || r.Fields[0].Value != "200" || r.Fields[5].Value != long {
		t.Errorf("read back %v, want :status and 5 fields", r.Fields)
	}
}
