// Package h1 reads and writes HTTP/1.1 (and 1.0) message heads and chunked
// bodies, for lb's reverse proxy.
//
// ReadRequest and ReadResponse parse a head from a bufio.Reader into a
// reused Request or Response, whose storage they keep and reuse: once
// grown, parsing a message allocates nothing. The storage grows in chunks
// as the head's bytes arrive, holding them once; Head.Trim lets go of
// storage a large message made grow. The byte slices of a message
// (Method, Target, Reason, field names and values) alias that storage and
// stay valid until the message is reset or re-read. The body stays in the
// bufio.Reader, to be read as Body says: io.LimitReader for BodyLength,
// ChunkedReader for BodyChunked, to the end for BodyUntilClose.
// WriteRequestHead, WriteResponseHead and ChunkedWriter write messages.
// A ChunkedReader keeps the trailer section it read (Trailer), which
// ChunkedWriter.CloseTrailer writes at the end of another chunked body;
// TrailerAllowed and Head.RemoveDisallowedTrailers say which trailer
// fields a proxy may forward.
//
// # Strictness
//
// A proxy must frame a request exactly as the server behind it will, or
// a client can hide a request inside another (request smuggling, RFC 9112
// 11.2). So ReadRequest rejects, with an *Error, whatever could be read
// two ways:
//
//   - both Content-Length and Transfer-Encoding (400);
//   - several Content-Length fields, a list of different lengths, or a
//     length that is not 1*DIGIT within an int64 (400); a list of equal
//     lengths, "5, 5", is accepted and the field rewritten to "5";
//   - Transfer-Encoding whose final coding is not chunked, or that names
//     chunked twice, or is in an HTTP/1.0 request (400); codings before
//     chunked, as in "gzip, chunked" (501);
//   - whitespace between a field name and its colon, a field line starting
//     with whitespace (obs-fold), a field name that is not a token, a
//     control character (but HTAB) in a value (400);
//   - several Host fields, an invalid Host, no Host in HTTP/1.1 (400);
//   - a malformed request line (400), a version other than HTTP/1.x (505).
//
// Lines may end with a bare LF rather than CRLF; a bare CR is an error.
// Up to 8 empty lines before a request line are skipped. A start line
// longer than Limits.MaxHeaderBytes is a 414 for a request; a longer head,
// or more than Limits.MaxHeaders fields, a 431.
//
// ReadResponse applies the same rules to field lines, except that a
// Content-Length next to a Transfer-Encoding ending with chunked is
// deleted rather than rejected (RFC 9112 6.3); any *Error from it means
// the proxy answers 502.
package h1
