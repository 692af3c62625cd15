package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
)

// maxChunkLine bounds a chunk-size line, extensions included.
const maxChunkLine = 4096

// ChunkedReader decodes a chunked body (RFC 9112 7.1) from a
// bufio.Reader: Read returns the data, then io.EOF after the last chunk
// and the trailer section. Trailer fields are read, bounded by the Limits
// like a head, and kept for Trailer. Chunk extensions are accepted and
// ignored.
//
// Chunk framing is strict: chunk-size lines and the data of each chunk
// end with CRLF (a bare LF is malformed); the trailer section follows the
// rules of header fields. Malformed framing is an *Error with Status 400
// (431 for an oversized trailer section); an end of input before the end
// of the body is io.ErrUnexpectedEOF; errors of the bufio.Reader are
// returned as they are. Every error, io.EOF included, is sticky until
// Reset.
//
// The zero value is usable after Reset; a ChunkedReader can be reused for
// body after body.
type ChunkedReader struct {
	br   *bufio.Reader
	lim  Limits
	left int64 // bytes of the current chunk's data still to read
	crlf bool  // the CRLF after a chunk's data is still to read
	err  error // sticky

	trailer Head // the trailer section, once read
}

// errNoReader is the error of a ChunkedReader or ChunkedWriter used
// before Reset.
var errNoReader = errors.New("h1: ChunkedReader used before Reset")

// Reset makes c decode a new chunked body from br, with lim bounding the
// trailer section.
func (c *ChunkedReader) Reset(br *bufio.Reader, lim Limits) {
	c.br = br
	c.lim = lim.withDefaults()
	c.left = 0
	c.crlf = false
	c.err = nil
	c.trailer.Reset()
}

// Read reads body data into p. It does not block for more than it needs:
// it returns the data of one chunk at most, and once it has data it does
// not wait for the next chunk's header.
func (c *ChunkedReader) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.br == nil {
		return 0, errNoReader
	}
	if len(p) == 0 {
		return 0, nil
	}
	for c.left == 0 {
		if c.crlf {
			if err := c.readCRLF(); err != nil {
				return 0, c.fail(err)
			}
		}
		size, err := c.readSize()
		if err != nil {
			return 0, c.fail(err)
		}
		if size == 0 {
			if err := c.trailer.readFields(c.br, c.lim, 0, nil); err != nil {
				if e, ok := err.(*Error); ok {
					e.Reason = "trailer section: " + e.Reason
				}
				return 0, c.fail(err)
			}
			return 0, c.fail(io.EOF)
		}
		c.left = size
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.br.Read(p)
	c.left -= int64(n)
	if c.left == 0 {
		c.crlf = true
		// Check the CRLF now if it is at hand, not to block for it.
		if c.br.Buffered() >= 2 {
			if err := c.readCRLF(); err != nil {
				return n, c.fail(err)
			}
		}
	}
	if err != nil {
		return n, c.fail(err)
	}
	return n, nil
}

// Trailer returns the fields of the trailer section, once Read returned
// io.EOF: the body and its trailer section were read whole. Its storage is
// c's: it stays valid until Reset, and the caller may change it (delete
// fields, say). Before the end of the body, or after an error, it returns
// nil; a body without trailer fields gives an empty Head.
func (c *ChunkedReader) Trailer() *Head {
	if c.err != io.EOF {
		return nil
	}
	return &c.trailer
}

// fail makes err sticky and returns it, io.EOF turned into
// io.ErrUnexpectedEOF unless it is the end of the body.
func (c *ChunkedReader) fail(err error) error {
	if err == io.EOF && c.left != 0 || err == io.EOF && c.crlf {
		err = io.ErrUnexpectedEOF
	}
	c.err = err
	return err
}

// readCRLF reads the CRLF that ends a chunk's data.
func (c *ChunkedReader) readCRLF() error {
	b, err := c.br.Peek(2)
	if len(b) > 0 && b[0] != '\r' || len(b) > 1 && b[1] != '\n' {
		return errorf(400, "chunk data not followed by CRLF")
	}
	if err != nil {
		return unexpected(err)
	}
	c.br.Discard(2)
	c.crlf = false
	return nil
}

// unexpected turns io.EOF, which is an end of input within the body, into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// readSize reads a chunk-size line: 1*HEXDIG [ BWS chunk-ext ] CRLF,
// chunk-ext being anything without control characters (but HTAB).
func (c *ChunkedReader) readSize() (int64, error) {
	const (
		inSize = iota
		afterSize
		inExt
		atLF
	)
	var size int64
	digits, state := 0, inSize
	for n := 1; ; n++ {
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		if n > maxChunkLine {
			return 0, errorf(400, "chunk-size line longer than %d bytes", maxChunkLine)
		}
		if state == inSize {
			if d, ok := hexValue(b); ok {
				if size > math.MaxInt64>>4 {
					return 0, errorf(400, "chunk size overflows")
				}
				size = size<<4 | int64(d)
				digits++
				continue
			}
			if digits == 0 {
				return 0, errorf(400, "invalid chunk size: %q", b)
			}
			state = afterSize
		}
		switch {
		case state == atLF:
			if b != '\n' {
				return 0, errorf(400, "chunk-size line with a CR not before LF")
			}
			return size, nil
		case b == '\r':
			state = atLF
		case state == afterSize && isOWS(b):
		case state == afterSize && b == ';':
			state = inExt
		case state == afterSize:
			return 0, errorf(400, "invalid character %q after chunk size", b)
		case charClass[b]&classValue == 0: // in an extension
			return 0, errorf(400, "invalid character %q in chunk extension", b)
		}
	}
}

// hexValue returns the value of the hexadecimal digit b.
func hexValue(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// ChunkedWriter encodes a chunked body (RFC 9112 7.1) onto a
// bufio.Writer: each non-empty Write is one chunk; Close writes the last
// chunk, "0\r\n\r\n", without trailers, and CloseTrailer the last chunk
// with trailer fields. It does not flush. The zero value is usable after
// Reset; a ChunkedWriter can be reused for body after body.
type ChunkedWriter struct {
	w      *bufio.Writer
	closed bool
}

// errWriterClosed is the error of a Write after Close.
var errWriterClosed = errors.New("h1: write to a closed ChunkedWriter")

// Reset makes c encode a new chunked body onto w.
func (c *ChunkedWriter) Reset(w *bufio.Writer) {
	c.w = w
	c.closed = false
}

// Write writes p as one chunk. An empty p writes nothing.
func (c *ChunkedWriter) Write(p []byte) (int, error) {
	switch {
	case c.w == nil:
		return 0, errors.New("h1: ChunkedWriter used before Reset")
	case c.closed:
		return 0, errWriterClosed
	case len(p) == 0:
		return 0, nil
	}
	const hex = "0123456789abcdef"
	var digits [16]byte
	i := len(digits)
	for n := uint64(len(p)); n > 0; n >>= 4 {
		i--
		digits[i] = hex[n&15]
	}
	for _, d := range digits[i:] {
		c.w.WriteByte(d)
	}
	if _, err := c.w.WriteString("\r\n"); err != nil {
		return 0, err
	}
	n, err := c.w.Write(p)
	if err != nil {
		return n, err
	}
	if _, err := c.w.WriteString("\r\n"); err != nil {
		return n, err
	}
	return n, nil
}

// Close writes the last chunk and the empty trailer section, "0\r\n\r\n".
// It does not flush, nor close the underlying writer. Closing again does
// nothing.
func (c *ChunkedWriter) Close() error { return c.CloseTrailer(nil) }

// CloseTrailer writes the last chunk, "0\r\n", the fields of t as the
// trailer section ("Name: Value\r\n" each; none when t is nil or empty),
// then the final "\r\n". It refuses, writing nothing and leaving c open, a
// field whose name is not a token or whose value holds a control character,
// as WriteRequestHead does. Which fields may be trailers is the caller's
// business (see Head.RemoveDisallowedTrailers). It does not flush, nor
// close the underlying writer. Closing again does nothing.
func (c *ChunkedWriter) CloseTrailer(t *Head) error {
	switch {
	case c.w == nil:
		return errors.New("h1: ChunkedWriter used before Reset")
	case c.closed:
		return nil
	}
	if t == nil || len(t.Fields) == 0 {
		c.closed = true
		_, err := c.w.WriteString("0\r\n\r\n")
		return err
	}
	if err := checkFields(t); err != nil {
		return fmt.Errorf("h1: writing trailer section: %w", err)
	}
	c.closed = true
	c.w.WriteString("0\r\n")
	return writeFields(c.w, t)
}
