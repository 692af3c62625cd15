package h1

import (
	"strings"
	"testing"
)

// headOf returns a Head with fields given as "Name: Value".
func headOf(fields ...string) *Head {
	var h Head
	for _, f := range fields {
		name, value, _ := strings.Cut(f, ": ")
		h.Add(name, []byte(value))
	}
	return &h
}

func TestHeadGetHasIndex(t *testing.T) {
	h := headOf("Host: h", "X-A: 1", "x-a: 2", "Accept: */*", "X-A: 3")
	tests := []struct {
		name    string
		want    string
		ok      bool
		indexes []int
	}{
		{"X-A", "1", true, []int{1, 2, 4}},
		{"x-A", "1", true, []int{1, 2, 4}},
		{"host", "h", true, []int{0}},
		{"Missing", "", false, nil},
		{"X-", "", false, nil},
		{"X-AA", "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := h.Get(tt.name)
			if string(v) != tt.want || ok != tt.ok {
				t.Errorf("Get = %q, %v; want %q, %v", v, ok, tt.want, tt.ok)
			}
			if h.Has(tt.name) != tt.ok {
				t.Errorf("Has = %v", !tt.ok)
			}
			var got []int
			for i := h.Index(tt.name, 0); i >= 0; i = h.Index(tt.name, i+1) {
				got = append(got, i)
			}
			if len(got) != len(tt.indexes) {
				t.Fatalf("indexes %v, want %v", got, tt.indexes)
			}
			for i := range got {
				if got[i] != tt.indexes[i] {
					t.Fatalf("indexes %v, want %v", got, tt.indexes)
				}
			}
		})
	}
	if i := h.Index("X-A", -5); i != 1 {
		t.Errorf("Index from -5 = %d", i)
	}
	if i := h.Index("X-A", 99); i != -1 {
		t.Errorf("Index from 99 = %d", i)
	}
}

func TestHeadEdit(t *testing.T) {
	tests := []struct {
		name string
		edit func(h *Head)
		want string
	}{
		{"add", func(h *Head) { h.Add("X-New", []byte("v")) }, "A: 1|B: 2|a: 3|X-New: v"},
		{"set replaces all and appends", func(h *Head) { h.Set("a", []byte("9")) }, "B: 2|a: 9"},
		{"set new", func(h *Head) { h.Set("C", []byte("c")) }, "A: 1|B: 2|a: 3|C: c"},
		{"del", func(h *Head) { h.Del("A") }, "B: 2"},
		{"del missing", func(h *Head) { h.Del("Z") }, "A: 1|B: 2|a: 3"},
		{"set from own value", func(h *Head) {
			v, _ := h.Get("B")
			h.Set("A", v)
		}, "B: 2|A: 2"},
		{"set empty", func(h *Head) { h.Set("B", nil) }, "A: 1|a: 3|B: "},
		{"reset", func(h *Head) { h.Reset() }, ""},
		{"reset then add", func(h *Head) {
			h.Reset()
			h.Add("Z", []byte("z"))
		}, "Z: z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := headOf("A: 1", "B: 2", "a: 3")
			tt.edit(h)
			if got := strings.Join(fieldStrings(h), "|"); got != tt.want {
				t.Errorf("fields %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHeadAddCopies checks that Add copies its arguments and that appending
// to a field's value cannot write over the next field.
func TestHeadAddCopies(t *testing.T) {
	var h Head
	v := []byte("value")
	h.Add("A", v)
	h.Add("B", []byte("b"))
	v[0] = 'X'
	a, _ := h.Get("A")
	if string(a) != "value" {
		t.Errorf("A = %q after changing the caller's slice", a)
	}
	_ = append(a, "!!!"...)
	if b, _ := h.Get("B"); string(b) != "b" {
		t.Errorf("B = %q after appending to A's value", b)
	}
	// Values added before the arena grows stay valid after.
	for i := 0; i < 1000; i++ {
		h.Add("X", []byte("0123456789"))
	}
	if a, _ := h.Get("A"); string(a) != "value" {
		t.Errorf("A = %q after growth", a)
	}
}

func TestHasToken(t *testing.T) {
	h := headOf("Connection: keep-alive, Upgrade", "Connection: ,  X-Foo\t,", "TE: trailers;q=1")
	tests := []struct {
		name, token string
		want        bool
	}{
		{"Connection", "upgrade", true},
		{"connection", "KEEP-ALIVE", true},
		{"Connection", "x-foo", true},
		{"Connection", "close", false},
		{"Connection", "keep", false},
		{"Connection", "", true}, // an empty list element
		{"Upgrade", "upgrade", false},
		{"TE", "trailers", false},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+tt.token, func(t *testing.T) {
			if got := h.HasToken(tt.name, tt.token); got != tt.want {
				t.Errorf("HasToken = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRemoveHopByHop(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   string
	}{
		{"standard ones", []string{"Host: h", "Connection: keep-alive", "Keep-Alive: timeout=5",
			"Proxy-Connection: keep-alive", "TE: trailers", "Trailer: X", "Transfer-Encoding: chunked",
			"Upgrade: websocket", "Proxy-Authorization: Basic x", "Accept: */*"},
			"Host: h|Trailer: X|Proxy-Authorization: Basic x|Accept: */*"},
		{"Trailer named by Connection", []string{"Trailer: X-T", "Connection: trailer"}, ""},
		{"named by Connection", []string{"X-A: 1", "Connection: x-a, X-B", "X-B: 2", "X-C: 3", "connection: x-c"},
			""},
		{"Connection does not remove Content-Length nor Host", []string{"Host: h", "Content-Length: 5",
			"Connection: content-length, host, x-z", "X-Z: z"}, "Host: h|Content-Length: 5"},
		{"none", []string{"A: 1", "B: 2"}, "A: 1|B: 2"},
		{"empty", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := headOf(tt.fields...)
			h.RemoveHopByHop()
			if got := strings.Join(fieldStrings(h), "|"); got != tt.want {
				t.Errorf("fields %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHeadAllocs(t *testing.T) {
	h := headOf("Host: h", "Connection: x-a, close", "X-A: 1", "Accept: */*")
	v := []byte("value")
	n := testing.AllocsPerRun(100, func() {
		h.Reset()
		h.Add("Host", []byte("h"))
		h.Add("Connection", []byte("x-a, close"))
		h.Add("X-A", v)
		h.Set("Accept", v)
		h.Del("Nothing")
		_ = h.HasToken("Connection", "close")
		h.RemoveHopByHop()
	})
	if n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

func TestTrailerAllowed(t *testing.T) {
	for name, want := range map[string]bool{
		"X-Checksum": true, "Grpc-Status": true, "Server-Timing": true, "Digest": true,
		"Content-Length": false, "content-length": false, "TRANSFER-ENCODING": false, "Trailer": false,
		"Host": false, "Connection": false, "Keep-Alive": false, "Proxy-Connection": false, "TE": false,
		"Upgrade": false, "Content-Type": false, "Content-Encoding": false, "Content-Range": false,
		"Cache-Control": false, "Expires": false, "Authorization": false, "Proxy-Authorization": false,
		"Set-Cookie": false, "Cookie": false, "": false,
	} {
		if got := TrailerAllowed(name); got != want {
			t.Errorf("TrailerAllowed(%q) = %v, want %v", name, got, want)
		}
		if got := TrailerAllowed([]byte(name)); got != want {
			t.Errorf("TrailerAllowed([]byte(%q)) = %v, want %v", name, got, want)
		}
	}
}

func TestRemoveDisallowedTrailers(t *testing.T) {
	h := headOf("X-A: 1", "Content-Length: 5", "x-b: 2", "set-cookie: s=1", "Host: evil", "X Bad: 1", "X-Bad: a\r\nb", "X-A: 3")
	h.RemoveDisallowedTrailers()
	if got, want := strings.Join(fieldStrings(h), "|"), "X-A: 1|x-b: 2|X-A: 3"; got != want {
		t.Errorf("fields %q, want %q", got, want)
	}
	var empty Head
	empty.RemoveDisallowedTrailers()
	if len(empty.Fields) != 0 {
		t.Errorf("fields %q", fieldStrings(&empty))
	}
}

func TestCleanTrailerHeader(t *testing.T) {
	tests := []struct {
		name   string
		fields []string
		want   string
	}{
		{"none", []string{"A: 1"}, "A: 1"},
		{"allowed names kept as they are", []string{"Trailer: X-A, x-b", "A: 1", "Trailer: X-C"},
			"Trailer: X-A, x-b|A: 1|Trailer: X-C"},
		{"disallowed names removed", []string{"Trailer: X-A, Content-Length,host", "A: 1", "Trailer: X-C, Set-Cookie"},
			"A: 1|Trailer: X-A, X-C"},
		{"empty elements removed", []string{"Trailer: ,X-A,, "}, "Trailer: X-A"},
		{"nothing left", []string{"A: 1", "Trailer: Content-Length, Transfer-Encoding", "B: 2"}, "A: 1|B: 2"},
		{"empty", []string{"Trailer: "}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := headOf(tt.fields...)
			h.CleanTrailerHeader()
			if got := strings.Join(fieldStrings(h), "|"); got != tt.want {
				t.Errorf("fields %q, want %q", got, tt.want)
			}
		})
	}
}

func TestTrailerHelpersAllocs(t *testing.T) {
	var h Head
	v := []byte("X-A, Content-Length, X-B")
	run := func() {
		h.Reset()
		h.Add("Host", []byte("h"))
		h.Add("Trailer", v)
		h.CleanTrailerHeader()
		h.Add("Cookie", v)
		h.RemoveDisallowedTrailers()
	}
	run()
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}
