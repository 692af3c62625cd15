package h1

// Building a request head from parts rather than from HTTP/1 text, as a
// translation from HTTP/2 does. The parts are copied into the head's own
// storage, as Add does; check them with ValidToken, ValidTarget, ValidHost
// and ValidValue first, since WriteRequestHead refuses what ReadRequest
// would.

// room makes room for n more bytes in h's arena, in a new chunk when the
// current one is full (see Head.buf).
func (h *Head) room(n int) {
	if n > cap(h.buf)-len(h.buf) {
		h.newChunk(0, n, 0)
	}
}

// SetRequestLine sets r's method, target and HTTP/1.minor version,
// copying method and target into r's storage.
func (r *Request) SetRequestLine(method, target string, minor int) {
	r.room(len(method) + len(target))
	start := len(r.buf)
	r.buf = append(r.buf, method...)
	mid := len(r.buf)
	r.buf = append(r.buf, target...)
	r.Method = r.buf[start:mid:mid]
	r.Target = clip(r.buf[mid:])
	r.Minor = minor
}

// AddString is Add for a name and a value held as strings: it copies both
// into h's storage, without converting them first.
func (h *Head) AddString(name, value string) { add(h, name, value) }

// AppendToLast appends sep and value to the value of the last field of h,
// as one value: "Cookie: a=1" and "; ", "b=2" make "Cookie: a=1; b=2".
// The last field must have been added by Add or AddString, and nothing
// added to h since (its value ends h's storage).
func (h *Head) AppendToLast(sep, value string) {
	f := &h.Fields[len(h.Fields)-1]
	if n := len(sep) + len(value); n > cap(h.buf)-len(h.buf) {
		// The value so far moves to the new chunk with what follows.
		h.newChunk(len(f.Value), n, 0)
	}
	start := len(h.buf) - len(f.Value)
	h.buf = append(h.buf, sep...)
	h.buf = append(h.buf, value...)
	f.Value = clip(h.buf[start:])
}
