// Package proxyproto reads and writes HAProxy PROXY protocol headers,
// version 1 and version 2, as specified in
// https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt.
//
// A proxy that forwards a TCP connection sends a PROXY header as the very
// first bytes of the forwarded connection, so that the server behind it learns
// the addresses of the original connection (the client's address and the
// address the client connected to) instead of the proxy's.
//
// Version 1 is a single human-readable line of at most 107 bytes:
//
//	PROXY TCP4 192.0.2.1 198.51.100.2 56324 443\r\n
//	PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n
//	PROXY UNKNOWN\r\n
//
// Version 2 is binary: a 12-byte signature ("\r\n\r\n\x00\r\nQUIT\n"), a
// version and command byte (0x20 LOCAL, 0x21 PROXY), an address family and
// transport byte, a 16-bit big-endian length, the addresses and ports, and
// then type-length-value records (TLVs) carrying, among others, the ALPN
// protocol, the TLS server name and TLS details of the client connection.
//
// # API
//
// [Parse] decodes a header of either version from the start of a byte slice
// and reports how many bytes it occupies; it returns [ErrIncomplete] when the
// bytes are a valid beginning that needs more bytes, [ErrNotProxy] when they
// do not begin with a PROXY signature at all, and an [*Error] naming what is
// wrong with a malformed header. [HasSignature] tells whether bytes begin with
// either signature, to refuse headers from peers that are not trusted to send
// them.
//
// [Read] reads exactly one header from a connected TCP socket through its
// [syscall.RawConn]: it peeks until a whole header has arrived and then
// consumes exactly the header's bytes, so that everything after it stays in
// the socket for the caller (which may, for instance, splice it).
//
// [AppendV1] and [AppendV2] encode a [Header] for sending to a server.
//
// Parse, AppendV1 and AppendV2 do not allocate, except that Parse copies an
// AUTHORITY TLV (and ALPN or TLS version strings it does not know) into a new
// string, so that the Header never refers to the caller's buffer.
//
// # What Parse accepts
//
// Version 1 is parsed strictly: exactly one space between fields, addresses of
// the stated family without heading zeroes (IPv6 in any RFC 4291 text form,
// without a zone), decimal ports 0-65535 without heading zeroes, and a CRLF
// within the first 107 bytes; a lone CR or LF is an error. "PROXY UNKNOWN"
// yields a Header with Local set, whatever follows it on the line.
//
// Version 2 accepts the LOCAL command (Local set; the family and addresses are
// ignored) and the PROXY command with AF_INET or AF_INET6 over STREAM. For the
// PROXY command with AF_UNSPEC, AF_UNIX or a DGRAM transport, Local is set and
// no addresses are returned: the receiver uses the real connection's
// endpoints, as the specification asks. Family bytes that the specification
// leaves undefined are rejected. Headers whose length field exceeds 4096 are
// rejected. TLVs are checked to lie within the header; ALPN, AUTHORITY and SSL
// (with its SSL_VERSION sub-TLV) are decoded, a CRC32C TLV is verified, and
// any other TLV is skipped.
package proxyproto
