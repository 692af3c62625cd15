package rules

import "strings"

// field is one header field of a fakeHeader.
type field struct {
	name  string
	value []byte
}

// fakeHeader is a Header and an Editor over a slice of fields. It reuses
// the slots and value buffers it has, so that it does not allocate once
// grown: removing a field swaps slots instead of copying them, so that no
// two slots share a value buffer.
type fakeHeader struct {
	f []field
}

// hdr returns a fakeHeader with the fields given as name, value, ....
func hdr(kv ...string) *fakeHeader {
	h := &fakeHeader{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], []byte(kv[i+1]))
	}
	return h
}

func (h *fakeHeader) Get(name string) ([]byte, bool) {
	for i := range h.f {
		if strings.EqualFold(h.f[i].name, name) {
			return h.f[i].value, true
		}
	}
	return nil, false
}

func (h *fakeHeader) Set(name string, value []byte) {
	for i := range h.f {
		if strings.EqualFold(h.f[i].name, name) {
			h.f[i].value = append(h.f[i].value[:0], value...)
			h.del(name, i+1)
			return
		}
	}
	h.Add(name, value)
}

func (h *fakeHeader) Add(name string, value []byte) {
	n := len(h.f)
	if n < cap(h.f) {
		h.f = h.f[:n+1]
		h.f[n].name = name
		h.f[n].value = append(h.f[n].value[:0], value...)
		return
	}
	h.f = append(h.f, field{name: name, value: append([]byte(nil), value...)})
}

func (h *fakeHeader) Del(name string) { h.del(name, 0) }

// del removes the fields of that name from index from on.
func (h *fakeHeader) del(name string, from int) {
	j := from
	for i := from; i < len(h.f); i++ {
		if !strings.EqualFold(h.f[i].name, name) {
			h.f[i], h.f[j] = h.f[j], h.f[i]
			j++
		}
	}
	h.f = h.f[:j]
}

// values returns the values of the fields of that name, in order.
func (h *fakeHeader) values(name string) []string {
	var vs []string
	for _, f := range h.f {
		if strings.EqualFold(f.name, name) {
			vs = append(vs, string(f.value))
		}
	}
	return vs
}

// String returns the fields as "Name: value" lines.
func (h *fakeHeader) String() string {
	var b strings.Builder
	for _, f := range h.f {
		b.WriteString(f.name + ": " + string(f.value) + "\n")
	}
	return b.String()
}
