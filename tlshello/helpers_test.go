package tlshello

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"math/big"
	"net"
	"testing"
	"time"
)

// patience bounds waits for things that should happen; the machine may be
// busy, so it is generous and never a measure of speed.
const patience = 10 * time.Second

// helloConfig describes a ClientHello that crypto/tls sends.
type helloConfig struct {
	name       string
	serverName string
	tls12      bool     // MaxVersion TLS 1.2
	alpn       []string // NextProtos
	want       string   // what Parse should return
}

var realHellos = []helloConfig{
	{name: "upper case and trailing dot", serverName: "Example.COM.", want: "example.com"},
	{name: "upper case and trailing dot, TLS 1.2", serverName: "Example.COM.", tls12: true, want: "example.com"},
	{name: "a.b.test", serverName: "a.b.test", want: "a.b.test"},
	{name: "a.b.test, TLS 1.2", serverName: "a.b.test", tls12: true, want: "a.b.test"},
	{name: "a.b.test, ALPN", serverName: "a.b.test", alpn: []string{"h2", "http/1.1"}, want: "a.b.test"},
	{name: "a.b.test, TLS 1.2, ALPN", serverName: "a.b.test", tls12: true, alpn: []string{"h2", "http/1.1"}, want: "a.b.test"},
	{name: "no name", want: ""},
	{name: "no name, TLS 1.2", tls12: true, want: ""},
	{name: "no name, ALPN", alpn: []string{"h2"}, want: ""},
	{name: "IPv4 address", serverName: "192.0.2.1", want: ""},
	{name: "IPv6 address", serverName: "2001:db8::1", tls12: true, want: ""},
	{name: "example.com", serverName: "example.com", want: "example.com"},
}

// captureHello returns the bytes of the ClientHello that a tls.Client with
// the given configuration writes: its first TLS record (crypto/tls writes a
// ClientHello in one record).
func captureHello(t testing.TB, hc helloConfig) []byte {
	t.Helper()
	cfg := &tls.Config{
		ServerName:         hc.serverName,
		InsecureSkipVerify: true,
		NextProtos:         hc.alpn,
	}
	if hc.tls12 {
		cfg.MaxVersion = tls.VersionTLS12
	}
	clientEnd, serverEnd := net.Pipe()
	defer serverEnd.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := tls.Client(clientEnd, cfg)
		c.Handshake() // fails when serverEnd closes
		c.Close()
	}()
	defer func() { serverEnd.Close(); <-done }()
	serverEnd.SetDeadline(time.Now().Add(patience))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(serverEnd, hdr); err != nil {
		t.Fatalf("reading the record header of the ClientHello: %v", err)
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	hello := make([]byte, 5+n)
	copy(hello, hdr)
	if _, err := io.ReadFull(serverEnd, hello[5:]); err != nil {
		t.Fatalf("reading the %d-byte ClientHello record: %v", n, err)
	}
	if hello[0] != 22 || hello[5] != 1 {
		t.Fatalf("the first record is not a ClientHello: % x", hello[:6])
	}
	if m := int(hello[6])<<16 | int(hello[7])<<8 | int(hello[8]); 4+m != n {
		t.Fatalf("the ClientHello (%d bytes) does not fill its record (%d bytes)", 4+m, n)
	}
	return hello
}

// reframe carries the handshake message of a one-record hello in records
// whose payloads have the given sizes, the last one taking the rest.
func reframe(hello []byte, sizes ...int) []byte {
	msg := hello[5:]
	var out []byte
	for i := 0; len(msg) > 0; i++ {
		n := len(msg)
		if i < len(sizes) && sizes[i] < n {
			n = sizes[i]
		}
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// Building ClientHellos by hand.

func u8(b []byte, v int) []byte  { return append(b, byte(v)) }
func u16(b []byte, v int) []byte { return append(b, byte(v>>8), byte(v)) }
func u24(b []byte, v int) []byte { return append(b, byte(v>>16), byte(v>>8), byte(v)) }

// vec16 is a vector with a 16-bit length.
func vec16(parts ...[]byte) []byte {
	var body []byte
	for _, p := range parts {
		body = append(body, p...)
	}
	return append(u16(nil, len(body)), body...)
}

// ext is an extension of the given type.
func ext(typ int, body []byte) []byte {
	return append(u16(nil, typ), vec16(body)...)
}

// sniEntry is one server_name entry.
func sniEntry(nameType int, name string) []byte {
	return append(u8(nil, nameType), vec16([]byte(name))...)
}

// sniExt is a server_name extension listing the given host names.
func sniExt(names ...string) []byte {
	var entries [][]byte
	for _, n := range names {
		entries = append(entries, sniEntry(0, n))
	}
	return ext(0, vec16(entries...))
}

// helloParts are the fields of a ClientHello body.
type helloParts struct {
	sessionID []byte
	suites    []byte // the cipher_suites vector with its length
	comp      []byte // the compression_methods vector with its length
	exts      []byte // the extensions vector with its length; nil for none
}

func defaultParts() helloParts {
	return helloParts{
		sessionID: make([]byte, 32),
		suites:    vec16(u16(u16(nil, 0x1301), 0xc02f)),
		comp:      []byte{1, 0},
	}
}

// body is the ClientHello body.
func (p helloParts) body() []byte {
	b := []byte{3, 3}
	b = append(b, make([]byte, 32)...)
	b = u8(b, len(p.sessionID))
	b = append(b, p.sessionID...)
	b = append(b, p.suites...)
	b = append(b, p.comp...)
	return append(b, p.exts...)
}

// handshake is a ClientHello handshake message with the given body.
func handshake(body []byte) []byte {
	return append(u24([]byte{1}, len(body)), body...)
}

// record is one handshake record carrying payload.
func record(payload []byte) []byte {
	return append([]byte{22, 3, 1, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

// helloWith is a one-record ClientHello with the given extensions (each
// complete, with type and length).
func helloWith(exts ...[]byte) []byte {
	p := defaultParts()
	p.exts = vec16(exts...)
	return record(handshake(p.body()))
}

// peek calls Peek on conn with a read deadline d from now.
func peek(t *testing.T, conn *net.TCPConn, d time.Duration) (string, error) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return Peek(rc, make([]byte, MaxHello+64))
}

// selfSigned returns a certificate for example.com, ECDSA P-256, made now,
// and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "example.com"},
		DNSNames:              []string{"example.com"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}
