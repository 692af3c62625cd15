package headerblock

import (
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

// Read decodes the block that f starts, with the CONTINUATION frames that
// follow it, read from fr, into r.Fields. Fields past the budget are left
// out (Truncated), but the whole block is decoded, which keeps the table
// in step. A frame that brings more than 4 times what is left of the
// budget (x/net's framer counted twice a budget for the header fields and
// one for those a Trailer field announces), and so any CONTINUATION frame
// once the budget is spent, is a flood, not a block: Read returns an
// *Error without decoding it. It returns an *Error for a block HPACK
// cannot decode too, and fr's error when a frame cannot be read.
func (r *Reader) Read(fr *http2.Framer, f *http2.HeadersFrame) error {
	r.Fields = r.Fields[:0]
	r.remain, r.Truncated = r.max, false
	r.dec.SetEmitEnabled(true)
	frag, ended := f.HeaderBlockFragment(), f.HeadersEnded()
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
