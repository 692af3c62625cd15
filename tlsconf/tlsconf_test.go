package tlsconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"lb/internal/testcert"
)

// writeFile writes data to dir/name and returns the path.
func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// wantFileError checks that err is a *FileError for key, index and path
// whose message holds every one of parts.
func wantFileError(t *testing.T, err error, key string, index int, path string, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want a %s error", key)
	}
	var fe *FileError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q (%T) is no *FileError", err, err)
	}
	if fe.Key != key || fe.Index != index || fe.Path != path {
		t.Errorf("FileError{Key: %q, Index: %d, Path: %q}, want {%q, %d, %q}", fe.Key, fe.Index, fe.Path, key, index, path)
	}
	msg := err.Error()
	t.Log(msg)
	if prefix := key + " " + `"` + path + `": `; !strings.HasPrefix(msg, prefix) {
		t.Errorf("error %q does not start with %q", msg, prefix)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			t.Errorf("error %q does not say %q", msg, p)
		}
	}
}

func TestServerConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	goodCert, goodKey := ca.WriteLeaf(t, dir, "good", "a.test")
	_, otherKey := ca.WriteLeaf(t, dir, "other", "a.test")
	certPEM, keyPEM := ca.LeafValidity(t, time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC), "old.test")
	expiredCert := writeFile(t, dir, "expired.crt", certPEM)
	expiredKey := writeFile(t, dir, "expired.key", keyPEM)
	empty := writeFile(t, dir, "empty.pem", []byte("\n \n"))
	garbage := writeFile(t, dir, "garbage.pem", []byte("this is not a certificate\n"))
	badBase64 := writeFile(t, dir, "badb64.pem", []byte("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"))
	badDER := writeFile(t, dir, "badder.pem", []byte("-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n"))
	csr := writeFile(t, dir, "csr.pem", []byte("-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE REQUEST-----\n"))
	encrypted := writeFile(t, dir, "enc.key", []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END ENCRYPTED PRIVATE KEY-----\n"))
	badKey := writeFile(t, dir, "bad.key", []byte("-----BEGIN PRIVATE KEY-----\naGVsbG8gd29ybGQ=\n-----END PRIVATE KEY-----\n"))
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name  string
		certs []Cert
		key   string // FileError.Key
		index int
		path  string
		parts []string
	}{
		{"missing cert", []Cert{{missing, goodKey}}, KeyCertFile, 0, missing, []string{"no such file", "check the path"}},
		{"missing key", []Cert{{goodCert, missing}}, KeyKeyFile, 0, missing, []string{"no such file"}},
		{"directory", []Cert{{dir, goodKey}}, KeyCertFile, 0, dir, []string{"directory"}},
		{"empty cert", []Cert{{empty, goodKey}}, KeyCertFile, 0, empty, []string{"empty", "certificate chain"}},
		{"empty key", []Cert{{goodCert, empty}}, KeyKeyFile, 0, empty, []string{"empty", "private key"}},
		{"key as cert", []Cert{{goodKey, goodKey}}, KeyCertFile, 0, goodKey, []string{"holds a private key, not a certificate"}},
		{"cert as key", []Cert{{goodCert, goodCert}}, KeyKeyFile, 0, goodCert, []string{"holds a certificate, not a private key"}},
		{"swapped", []Cert{{goodKey, goodCert}}, KeyCertFile, 0, goodKey, []string{"not a certificate"}},
		{"mismatch", []Cert{{goodCert, otherKey}}, KeyKeyFile, 0, otherKey, []string{"does not match the certificate", "for a.test", goodCert}},
		{"expired", []Cert{{expiredCert, expiredKey}}, KeyCertFile, 0, expiredCert, []string{"expired on 2021-03-04 05:06:07 UTC", "renew"}},
		{"garbage", []Cert{{garbage, goodKey}}, KeyCertFile, 0, garbage, []string{"no valid PEM block"}},
		{"bad base64", []Cert{{badBase64, goodKey}}, KeyCertFile, 0, badBase64, []string{"no valid PEM block"}},
		{"bad DER", []Cert{{badDER, goodKey}}, KeyCertFile, 0, badDER, []string{"certificate 1 of the file is not valid"}},
		{"no certificate block", []Cert{{csr, goodKey}}, KeyCertFile, 0, csr, []string{"no certificate in it", `"CERTIFICATE REQUEST"`}},
		{"garbage key", []Cert{{goodCert, garbage}}, KeyKeyFile, 0, garbage, []string{"no valid PEM block"}},
		{"encrypted key", []Cert{{goodCert, encrypted}}, KeyKeyFile, 0, encrypted, []string{"encrypted"}},
		{"bad key", []Cert{{goodCert, badKey}}, KeyKeyFile, 0, badKey, []string{"not a valid private key"}},
		{"no cert path", []Cert{{"", goodKey}}, KeyCertFile, 0, "", []string{"no path"}},
		{"second cert", []Cert{{goodCert, goodKey}, {missing, goodKey}}, KeyCertFile, 1, missing, []string{"no such file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := ServerConfig(tt.certs, "", nil)
			if cfg != nil {
				t.Error("a config along with the error")
			}
			wantFileError(t, err, tt.key, tt.index, tt.path, tt.parts...)
		})
	}

	t.Run("missing is fs.ErrNotExist", func(t *testing.T) {
		_, err := ServerConfig([]Cert{{missing, goodKey}}, "", nil)
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("errors.Is(%q, fs.ErrNotExist) = false", err)
		}
	})
}

func TestServerConfigSettings(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	cf, kf := ca.WriteLeaf(t, dir, "a", "a.test")
	certs := []Cert{{cf, kf}}

	for _, tt := range []struct {
		min  string
		alpn []string
		err  string
	}{
		{"1.4", nil, `min_version: unknown TLS version "1.4"`},
		{"TLS1.2", nil, `unknown TLS version "TLS1.2"`},
		{"", []string{"h3"}, `alpn: unknown protocol "h3": lb speaks "h2" and "http/1.1"`},
		{"", []string{"http/1.0"}, `unknown protocol "http/1.0"`},
		{"", []string{"h2", "h2"}, `"h2" is listed twice`},
	} {
		if _, err := ServerConfig(certs, tt.min, tt.alpn); err == nil || !strings.Contains(err.Error(), tt.err) {
			t.Errorf("ServerConfig(min %q, alpn %q): %v, want %q", tt.min, tt.alpn, err, tt.err)
		}
	}
	if _, err := ServerConfig(nil, "", nil); err == nil || !strings.Contains(err.Error(), "no certificate") {
		t.Errorf("ServerConfig(no certs): %v, want a 'no certificate' error", err)
	}

	cfg, err := ServerConfig(certs, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("default MinVersion %x, want TLS 1.2", cfg.MinVersion)
	}
	if got := strings.Join(cfg.NextProtos, ","); got != "http/1.1" {
		t.Errorf("default NextProtos %q, want http/1.1", got)
	}
	if cfg.Certificates[0].Leaf == nil {
		t.Error("Leaf not set")
	}
	alpn := []string{"h2", "http/1.1"}
	cfg, err = ServerConfig(certs, "1.3", alpn)
	if err != nil {
		t.Fatal(err)
	}
	alpn[0] = "changed"
	if cfg.MinVersion != tls.VersionTLS13 || strings.Join(cfg.NextProtos, ",") != "h2,http/1.1" {
		t.Errorf("MinVersion %x NextProtos %q, want TLS 1.3 and h2,http/1.1 (a copy)", cfg.MinVersion, cfg.NextProtos)
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]uint16{
		"": tls.VersionTLS12, "1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13,
	} {
		if got, err := ParseVersion(s); err != nil || got != want {
			t.Errorf("ParseVersion(%q) = %x, %v, want %x", s, got, err, want)
		}
	}
	for _, s := range []string{"1", "1.4", "tls1.2", " 1.2", "v1.3"} {
		if _, err := ParseVersion(s); err == nil || !strings.Contains(err.Error(), `use "1.0", "1.1", "1.2" or "1.3"`) {
			t.Errorf("ParseVersion(%q): %v, want an error listing the versions", s, err)
		}
	}
}

func TestClientConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	_, keyFile := ca.WriteLeaf(t, dir, "a", "a.test")
	empty := writeFile(t, dir, "empty.pem", nil)
	garbage := writeFile(t, dir, "garbage.pem", []byte("junk"))
	missing := filepath.Join(dir, "missing.pem")
	for _, tt := range []struct {
		path  string
		parts []string
	}{
		{missing, []string{"no such file"}},
		{empty, []string{"empty", "CA certificates"}},
		{garbage, []string{"no valid PEM block", "CA certificates"}},
		{keyFile, []string{"holds a private key, not a certificate", "CA certificates"}},
	} {
		cfg, err := ClientConfig(tt.path, "", false)
		if cfg != nil {
			t.Errorf("%s: a config along with the error", tt.path)
		}
		wantFileError(t, err, KeyCAFile, -1, tt.path, tt.parts...)
	}
	cfg, err := ClientConfig("", "x.test", true)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs != nil || cfg.ServerName != "x.test" || !cfg.InsecureSkipVerify || cfg.ClientSessionCache == nil {
		t.Errorf("ClientConfig(\"\", x.test, true) = %+v", cfg)
	}
}

// server is a TLS server on loopback: it completes each handshake, then
// reads until the client closes.
type server struct {
	ln net.Listener
	wg sync.WaitGroup
}

// startServer listens on 127.0.0.1 with cfg until the test ends.
func startServer(t *testing.T, cfg *tls.Config) *server {
	t.Helper()
	ln, err := tls.Listen("tcp4", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln}
	ctx, cancel := context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.serve(ctx)
	t.Cleanup(func() {
		cancel()
		s.wg.Wait()
	})
	return s
}

// serve accepts connections until ctx is done.
func (s *server) serve(ctx context.Context) {
	defer s.wg.Done()
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for ctx.Err() == nil {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.wg.Add(1)
		go s.handle(ctx, c.(*tls.Conn))
	}
}

// handle completes the handshake and reads until the client closes, ctx
// is done or 10 s have passed.
func (s *server) handle(ctx context.Context, c *tls.Conn) {
	defer s.wg.Done()
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if err := c.HandshakeContext(ctx); err != nil {
		return
	}
	_, _ = io.Copy(io.Discard, c)
}

// addr is the server's address.
func (s *server) addr() string { return s.ln.Addr().String() }

// dial connects to addr with cfg and returns the state of the completed
// handshake.
func dial(t *testing.T, addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d := tls.Dialer{Config: cfg}
	c, err := d.DialContext(ctx, "tcp4", addr)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState(), nil
}

func TestSNIAndALPN(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	ac, ak := ca.WriteLeaf(t, dir, "a", "a.test")
	bc, bk := ca.WriteLeaf(t, dir, "b", "b.test", "*.b.test")
	cfg, err := ServerConfig([]Cert{{ac, ak}, {bc, bk}}, "", []string{"h2", "http/1.1"})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cfg.Certificates {
		if c.Leaf == nil {
			t.Fatalf("certificate %d: Leaf not set", i)
		}
	}
	srv := startServer(t, cfg)
	for _, tt := range []struct{ sni, want string }{
		{"b.test", "b.test"},
		{"x.b.test", "b.test"},
		{"a.test", "a.test"},
		{"unknown.test", "a.test"},
		{"", "a.test"},
	} {
		st, err := dial(t, srv.addr(), &tls.Config{ServerName: tt.sni, InsecureSkipVerify: true, NextProtos: []string{"h2", "http/1.1"}})
		if err != nil {
			t.Errorf("SNI %q: %v", tt.sni, err)
			continue
		}
		if got := st.PeerCertificates[0].Subject.CommonName; got != tt.want {
			t.Errorf("SNI %q: got the certificate of %s, want %s", tt.sni, got, tt.want)
		}
		if st.NegotiatedProtocol != "h2" {
			t.Errorf("SNI %q: ALPN %q, want h2", tt.sni, st.NegotiatedProtocol)
		}
	}

	// The default offers HTTP/1.1 alone.
	cfg, err = ServerConfig([]Cert{{ac, ak}}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, cfg)
	st, err := dial(t, srv.addr(), &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if st.NegotiatedProtocol != "http/1.1" {
		t.Errorf("default ALPN: negotiated %q, want http/1.1", st.NegotiatedProtocol)
	}
}

func TestMinVersion(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	cf, kf := ca.WriteLeaf(t, dir, "a", "a.test")
	cfg, err := ServerConfig([]Cert{{cf, kf}}, "1.3", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	client := &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS12}
	if st, err := dial(t, srv.addr(), client); err == nil {
		t.Errorf("a TLS 1.2 client connected to a min_version 1.3 server (version %x)", st.Version)
	}
	client.MaxVersion = 0
	st, err := dial(t, srv.addr(), client)
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != tls.VersionTLS13 {
		t.Errorf("version %x, want TLS 1.3", st.Version)
	}

	// An explicit 1.0 lets old clients in (Go's own default minimum for
	// servers is 1.2).
	cfg, err = ServerConfig([]Cert{{cf, kf}}, "1.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv = startServer(t, cfg)
	client = &tls.Config{ServerName: "a.test", RootCAs: ca.Pool(), MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS10}
	if st, err := dial(t, srv.addr(), client); err != nil || st.Version != tls.VersionTLS10 {
		t.Errorf("TLS 1.0 client, min_version 1.0: version %x, %v", st.Version, err)
	}
}

func TestClientConfigVerifies(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	caFile := ca.WriteCA(t, dir)
	cf, kf := ca.WriteLeaf(t, dir, "a", "a.test", "127.0.0.1")
	scfg, err := ServerConfig([]Cert{{cf, kf}}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, scfg)

	ok, err := ClientConfig(caFile, "a.test", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, srv.addr(), ok); err != nil {
		t.Errorf("server signed by the CA file: %v", err)
	}

	wrong, err := ClientConfig(caFile, "wrong.test", false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, srv.addr(), wrong)
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Errorf("server name wrong.test: %v, want a host name error", err)
	}

	// Another CA's file: unknown authority.
	otherDir := t.TempDir()
	other, err := ClientConfig(testcert.NewCA(t).WriteCA(t, otherDir), "a.test", false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = dial(t, srv.addr(), other)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("another CA: %v, want an unknown authority error", err)
	}

	// Insecure: any certificate.
	insecure, err := ClientConfig(testcert.NewCA(t).WriteCA(t, otherDir), "wrong.test", true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, srv.addr(), insecure); err != nil {
		t.Errorf("insecure: %v", err)
	}

	// No server name: the server's host, here an IP address, as
	// tls.Dialer fills in and ForServer sets.
	byHost, err := ClientConfig(caFile, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, srv.addr(), byHost); err != nil {
		t.Errorf("no server name, dialing %s: %v", srv.addr(), err)
	}
	per := ForServer(byHost, srv.addr())
	if per.ServerName != "127.0.0.1" || byHost.ServerName != "" {
		t.Errorf("ForServer: ServerName %q (original %q), want 127.0.0.1 on a copy", per.ServerName, byHost.ServerName)
	}
	raw, err := net.DialTimeout("tcp4", srv.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tls.Client(raw, per).Handshake(); err != nil {
		t.Errorf("tls.Client with ForServer's config: %v", err)
	}
	if ForServer(ok, "x:1") != ok || ForServer(insecure, "x:1") != insecure {
		t.Error("ForServer copied a config that names the server or skips verification")
	}
	if got := ForServer(byHost, "[::1]").ServerName; got != "::1" {
		t.Errorf("ForServer([::1]): ServerName %q, want ::1", got)
	}
}

func TestKeyFormats(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)

	// SEC 1 ("EC PRIVATE KEY"), as openssl ecparam writes it.
	certPEM, keyPEM := ca.Leaf(t, "ec.test")
	b, _ := pem.Decode(keyPEM)
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sec1, err := x509.MarshalECPrivateKey(k.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	ecCert := writeFile(t, dir, "ec.crt", certPEM)
	ecKey := writeFile(t, dir, "ec.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))

	// PKCS #1 ("RSA PRIVATE KEY") with a self-signed RSA certificate.
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rsa.test"}, DNSNames: []string{"rsa.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rk.Public(), rk)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := writeFile(t, dir, "rsa.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	rsaKey := writeFile(t, dir, "rsa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))

	cfg, err := ServerConfig([]Cert{{ecCert, ecKey}, {rsaCert, rsaKey}}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg)
	pool := ca.Pool()
	parsed, _ := x509.ParseCertificate(der)
	pool.AddCert(parsed)
	for _, name := range []string{"ec.test", "rsa.test"} {
		if _, err := dial(t, srv.addr(), &tls.Config{ServerName: name, RootCAs: pool}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// An RSA key with the EC certificate: a mismatch, not a panic.
	_, err = ServerConfig([]Cert{{ecCert, rsaKey}}, "", nil)
	wantFileError(t, err, KeyKeyFile, 0, rsaKey, "does not match")
}

// TestECDSAAndRSAForOneName serves one name with both kinds of
// certificates, the RSA one configured first: a client that can verify
// ECDSA gets the ECDSA one, a client that cannot (TLS 1.2 with RSA cipher
// suites only) the RSA one; a name of its own keeps its certificate.
func TestECDSAAndRSAForOneName(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	ecCert, ecKey := ca.WriteLeaf(t, dir, "site-ec", "site.test", "www.site.test")
	otherCert, otherKey := ca.WriteLeaf(t, dir, "other", "other.test")
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "site.test"}, DNSNames: []string{"WWW.site.test", "site.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, rk.Public(), rk)
	if err != nil {
		t.Fatal(err)
	}
	rsaCert := writeFile(t, dir, "site-rsa.crt", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	rsaKey := writeFile(t, dir, "site-rsa.key", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk)}))

	cfg, err := ServerConfig([]Cert{{rsaCert, rsaKey}, {otherCert, otherKey}, {ecCert, ecKey}}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cfg.Certificates[0].PrivateKey.(*ecdsa.PrivateKey); !ok || cfg.Certificates[2].Leaf.Subject.CommonName != "other.test" {
		t.Fatalf("order: %T first, %s last", cfg.Certificates[0].PrivateKey, cfg.Certificates[2].Leaf.Subject.CommonName)
	}
	srv := startServer(t, cfg)
	rsaOnly := []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384}
	for _, tt := range []struct {
		name string
		sni  string
		cfg  *tls.Config
		want x509.PublicKeyAlgorithm
	}{
		{"TLS 1.3", "site.test", &tls.Config{}, x509.ECDSA},
		{"TLS 1.2 ECDSA suites", "www.site.test", &tls.Config{MaxVersion: tls.VersionTLS12}, x509.ECDSA},
		{"TLS 1.2 RSA suites only", "site.test", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: rsaOnly}, x509.RSA},
		{"no SNI", "", &tls.Config{}, x509.ECDSA},
		{"no SNI, RSA only", "", &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: rsaOnly}, x509.RSA},
		{"a name of its own", "other.test", &tls.Config{}, x509.ECDSA},
	} {
		c := tt.cfg.Clone()
		c.ServerName, c.InsecureSkipVerify = tt.sni, true
		st, err := dial(t, srv.addr(), c)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got := st.PeerCertificates[0].PublicKeyAlgorithm; got != tt.want {
			t.Errorf("%s: a %v certificate, want %v", tt.name, got, tt.want)
		}
	}
}
