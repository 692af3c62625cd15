package headerblock

import (
	"encoding/binary"
	"io"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// A Reader decodes the header blocks a peer sends on one connection, with
// an HPACK decoder whose table it keeps in step with the peer's encoder.
// It judges nothing but the block's size: the fields are the caller's to
// check. Make one with NewReader.
type Reader struct {
	dec         *hpack.Decoder
	max, remain uint32
	// Fields are the fields of the last block read, valid until the next
	// Read; Truncated says fields past the budget were left out of them.
	Fields    []hpack.HeaderField
	Truncated bool
	// payload holds a HEADERS frame's payload (ReadHeaders).
	payload []byte
}

// NewReader returns a Reader that keeps up to max bytes of a block's
// fields, counted as HPACK does (name, value and 32 bytes each).
func NewReader(max uint32) *Reader {
	r := &Reader{max: max}
	r.dec = hpack.NewDecoder(4096, r.emit)
	r.dec.SetMaxStringLength(int(max))
	return r
}

// An Error ends the connection (RFC 9113 5.4.1) with its code.
type Error struct {
	Code   http2.ErrCode
	Reason string
}

func (e *Error) Error() string { return "HTTP/2 header block: " + e.Reason }

// maxKeptPayload bounds the buffer a Reader keeps for HEADERS payloads:
// the default largest frame (RFC 9113 4.2); a larger one, which a peer
// may send when allowed, gets a buffer of its own.
const maxKeptPayload = 16 << 10

// Headers is a HEADERS frame as ReadHeaders reads it: x/net's framer
// makes a frame of its own for each one, an allocation per request.
type Headers struct {
	StreamID  uint32
	EndStream bool
	// HasPriority says the frame carries a priority, which names the
	// stream it depends on (StreamDep).
	HasPriority bool
	StreamDep   uint32
}

// ReadHeaders reads the payload of the HEADERS frame whose header fh was
// just read (fr.ReadFrameHeader, which checked its size and its place
// among the frames) from src, the reader fr reads, then decodes its header
// block (read): into r.Fields, with the CONTINUATION frames that follow.
// The frame's own faults end the connection (an *Error), as RFC 9113 6.2
// says: stream 0 and padding longer than the rest of the payload
// (PROTOCOL_ERROR), a payload too short for its padding length or priority
// (FRAME_SIZE_ERROR, 4.2).
func (r *Reader) ReadHeaders(fr *http2.Framer, src io.Reader, fh http2.FrameHeader) (Headers, error) {
	h := Headers{StreamID: fh.StreamID, EndStream: fh.Flags.Has(http2.FlagHeadersEndStream)}
	p := r.payload
	if cap(p) < int(fh.Length) {
		p = make([]byte, fh.Length)
		if fh.Length <= maxKeptPayload {
			r.payload = p
		}
	}
	p = p[:fh.Length]
	if _, err := io.ReadFull(src, p); err != nil {
		return h, err
	}
	if fh.StreamID == 0 {
		return h, &Error{http2.ErrCodeProtocol, "HEADERS frame on stream 0"}
	}
	pad := 0
	if fh.Flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			return h, &Error{http2.ErrCodeFrameSize, "HEADERS frame too short for its padding length"}
		}
		pad, p = int(p[0]), p[1:]
	}
	if fh.Flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			return h, &Error{http2.ErrCodeFrameSize, "HEADERS frame too short for its priority"}
		}
		h.HasPriority, h.StreamDep = true, binary.BigEndian.Uint32(p)&0x7fffffff
		p = p[5:]
	}
	if pad > len(p) {
		return h, &Error{http2.ErrCodeProtocol, "HEADERS frame padding longer than its payload"}
	}
	return h, r.read(fr, p[:len(p)-pad], fh.Flags.Has(http2.FlagHeadersEndHeaders))
}

// read decodes the block that frag starts (ended: all of it), with the
// CONTINUATION frames that follow it, read from fr, into r.Fields. Fields
// past the budget are left out (Truncated), but the whole block is
// decoded, which keeps the table in step. A frame that brings more than 4
// times what is left of the budget (x/net's framer counted twice a budget
// for the header fields and one for those a Trailer field announces), and
// so any CONTINUATION frame once the budget is spent, is a flood, not a
// block: read returns an *Error without decoding it. It returns an *Error
// for a block HPACK cannot decode too, and fr's error when a frame cannot
// be read.
func (r *Reader) read(fr *http2.Framer, frag []byte, ended bool) error {
	r.Fields = r.Fields[:0]
	r.remain, r.Truncated = r.max, false
	r.dec.SetEmitEnabled(true)
	for {
		if int64(len(frag)) > 4*int64(r.remain) {
			return &Error{http2.ErrCodeProtocol, "far over the limits"}
		}
		if _, err := r.dec.Write(frag); err != nil {
			return &Error{http2.ErrCodeCompression, err.Error()}
		}
		if ended {
			break
		}
		next, err := fr.ReadFrame()
		if err != nil {
			return err
		}
		cf, ok := next.(*http2.ContinuationFrame) // the framer's frame order says so
		if !ok {
			return &Error{http2.ErrCodeProtocol, "not followed by CONTINUATION"}
		}
		frag, ended = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := r.dec.Close(); err != nil {
		return &Error{http2.ErrCodeCompression, err.Error()}
	}
	return nil
}

// emit is the decoder's: it keeps a field while the block is within the
// budget.
func (r *Reader) emit(f hpack.HeaderField) {
	if size := f.Size(); size <= r.remain {
		r.remain -= size
		r.Fields = append(r.Fields, f)
		return
	}
	r.remain, r.Truncated = 0, true
	r.dec.SetEmitEnabled(false)
}
