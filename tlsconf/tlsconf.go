// Package tlsconf builds the *tls.Config values of lb from the file paths of
// its configuration: a TLS-terminating frontend's (ServerConfig) and the one
// lb connects to TLS servers with (ClientConfig).
//
// Each generation of lb (a reload starts a new process) calls these once at
// start-up, and they read the files every time: that is how a reload picks
// up renewed certificates. Every problem with a file is a *FileError that
// names the file and says what is wrong with it and what to do.
package tlsconf

import (
	"bytes"
	"cmp"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Cert is one certificate: PEM files of the chain and its private key.
type Cert struct {
	// CertFile holds the certificate chain, PEM: the leaf first, then the
	// intermediates that sign it (the root may be left out).
	CertFile string
	// KeyFile holds the leaf's private key, PEM, unencrypted: PKCS #8
	// ("PRIVATE KEY"), PKCS #1 ("RSA PRIVATE KEY") or SEC 1 ("EC PRIVATE
	// KEY").
	KeyFile string
}

// Keys of the configuration that name files, as FileError.Key has them.
const (
	KeyCertFile = "cert_file"
	KeyKeyFile  = "key_file"
	KeyCAFile   = "ca_file"
)

// FileError is a problem with one file: the loader reports it as
// `lb.toml:30: frontend "web": tls: cert_file "/etc/lb/a.pem": <Msg>`.
type FileError struct {
	// Key is the configuration key that names the file: "cert_file",
	// "key_file" or "ca_file".
	Key string
	// Index is which certificate of ServerConfig's list, from 0, or -1
	// (the CA file of ClientConfig).
	Index int
	// Path is the file's path as configured.
	Path string
	// Err is what is wrong, and what to do about it.
	Err error
}

// Error returns `cert_file "/path": what is wrong and what to do`.
func (e *FileError) Error() string {
	return fmt.Sprintf("%s %q: %v", e.Key, e.Path, e.Err)
}

// Unwrap returns the underlying error: errors.Is(err, fs.ErrNotExist)
// tells a missing file, for one.
func (e *FileError) Unwrap() error { return e.Err }

// Protocols lb can speak over TLS, as ALPN names them.
const (
	ALPNHTTP2 = "h2"
	ALPNHTTP1 = "http/1.1"
)

// versions maps the configuration's TLS versions to crypto/tls's.
var versions = map[string]uint16{
	"1.0": tls.VersionTLS10,
	"1.1": tls.VersionTLS11,
	"1.2": tls.VersionTLS12,
	"1.3": tls.VersionTLS13,
}

// ParseVersion turns "1.2" into tls.VersionTLS12; it knows "1.0", "1.1",
// "1.2" and "1.3", and "" is the default, 1.2.
func ParseVersion(s string) (uint16, error) {
	if s == "" {
		return tls.VersionTLS12, nil
	}
	if v, ok := versions[s]; ok {
		return v, nil
	}
	return 0, fmt.Errorf("unknown TLS version %q: use \"1.0\", \"1.1\", \"1.2\" or \"1.3\"", s)
}

// ServerConfig returns the config of a TLS-terminating frontend. The first
// cert is the default; the others are chosen by the name the client asks
// for (SNI): crypto/tls picks the first certificate whose leaf is valid for
// that name, and the first of all when none is. minVersion is "1.0",
// "1.1", "1.2", "1.3" or "" (1.2). alpn is the list of protocols offered
// (ALPN), each "h2" or "http/1.1", in order of preference; nil or empty
// means ["http/1.1"].
//
// Every certificate is read and checked now: the files are PEM, the key
// matches the leaf, the leaf has not expired.
func ServerConfig(certs []Cert, minVersion string, alpn []string) (*tls.Config, error) {
	if len(certs) == 0 {
		return nil, errors.New("no certificate: a TLS frontend needs at least one cert_file and key_file")
	}
	minV, err := ParseVersion(minVersion)
	if err != nil {
		return nil, fmt.Errorf("min_version: %w", err)
	}
	protos, err := checkALPN(alpn)
	if err != nil {
		return nil, fmt.Errorf("alpn: %w", err)
	}
	cfg := &tls.Config{
		MinVersion: minV,
		NextProtos: protos,
	}
	now := time.Now()
	for i, c := range certs {
		pair, err := loadPair(i, c, now)
		if err != nil {
			return nil, err
		}
		cfg.Certificates = append(cfg.Certificates, pair)
	}
	preferECDSA(cfg.Certificates)
	return cfg, nil
}

// preferECDSA puts, among certificates for the same names, those with an
// ECDSA (or Ed25519) key before those with an RSA one, keeping the order
// otherwise: crypto/tls serves the first certificate for the name the
// client asks for that the client supports, so a client that can verify
// ECDSA gets the ECDSA certificate (a handshake costs a fraction of an RSA
// one) and one that cannot gets the RSA certificate, as HAProxy does with
// both kinds for one name.
func preferECDSA(certs []tls.Certificate) {
	group := make([]int, len(certs)) // the first certificate with the same names
	for i := range certs {
		group[i] = i
		for j := range i {
			if sameNames(certs[i].Leaf, certs[j].Leaf) {
				group[i] = group[j]
				break
			}
		}
	}
	rank := func(c *tls.Certificate) int {
		if _, rsa := c.PrivateKey.(*rsa.PrivateKey); rsa {
			return 1
		}
		return 0
	}
	order := make([]int, len(certs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return cmp.Or(cmp.Compare(group[a], group[b]), cmp.Compare(rank(&certs[a]), rank(&certs[b])))
	})
	sorted := make([]tls.Certificate, len(certs))
	for i, j := range order {
		sorted[i] = certs[j]
	}
	copy(certs, sorted)
}

// sameNames reports whether two certificates are for the same names and
// addresses.
func sameNames(a, b *x509.Certificate) bool {
	if a == nil || b == nil {
		return false
	}
	sorted := func(c *x509.Certificate) []string {
		names := slices.Clone(c.DNSNames)
		for _, ip := range c.IPAddresses {
			names = append(names, ip.String())
		}
		if len(names) == 0 {
			names = append(names, c.Subject.CommonName)
		}
		for i := range names {
			names[i] = strings.ToLower(names[i])
		}
		slices.Sort(names)
		return names
	}
	return slices.Equal(sorted(a), sorted(b))
}

// checkALPN returns the protocol list to offer: alpn checked, or the
// default.
func checkALPN(alpn []string) ([]string, error) {
	if len(alpn) == 0 {
		return []string{ALPNHTTP1}, nil
	}
	seen := map[string]bool{}
	for _, p := range alpn {
		if p != ALPNHTTP2 && p != ALPNHTTP1 {
			return nil, fmt.Errorf("unknown protocol %q: lb speaks %q and %q", p, ALPNHTTP2, ALPNHTTP1)
		}
		if seen[p] {
			return nil, fmt.Errorf("%q is listed twice", p)
		}
		seen[p] = true
	}
	return append([]string(nil), alpn...), nil
}

// ClientConfig returns the config lb connects to TLS servers with. caFile
// holds the CA certificates (PEM) that sign the servers' certificates; ""
// means the system's roots. serverName is the name verified in every
// server's certificate and sent as SNI; "" leaves ServerName empty, for
// the server's own host: tls.Dial and tls.Dialer fill it in from the
// address, and a caller of tls.Client uses ForServer. insecure skips the
// verification of the servers' certificates (the CA file, if given, is
// still read and checked).
//
// The config has a client session cache, so that connections to the same
// server resume TLS sessions: share it among the connections of a backend.
func ClientConfig(caFile, serverName string, insecure bool) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: insecure,
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	if caFile != "" {
		pool, err := loadCAs(caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	return cfg, nil
}

// ForServer returns the config to connect to the server at addr
// ("host:port" or a bare host) with: cfg itself when it names the server
// (ServerName set) or skips verification, else a copy whose ServerName is
// addr's host, so that the server's certificate is verified for that host
// (an IP address is verified against the certificate's IP addresses).
// Call it once per server, not per connection: it copies the config.
func ForServer(cfg *tls.Config, addr string) *tls.Config {
	if cfg.ServerName != "" || cfg.InsecureSkipVerify {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// readFile reads a configured file, turning the usual failures into
// messages that say what to do; what is what the file must hold.
func readFile(path, what string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the FileError already
		}
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("cannot read it: %w: check the path", err)
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("cannot read it: %w: make it readable by the user lb runs as", err)
		case errors.Is(err, syscall.EISDIR):
			return nil, fmt.Errorf("cannot read it: %w: name the file, not its directory", err)
		}
		return nil, fmt.Errorf("cannot read it: %w", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, fmt.Errorf("the file is empty: it must hold %s, PEM", what)
	}
	return b, nil
}

// pemBlocks decodes every PEM block of data. rest is whatever could not be
// decoded after the last block.
func pemBlocks(data []byte) (blocks []*pem.Block, rest []byte) {
	rest = data
	for len(blocks) < 10000 {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	return blocks, rest
}

// blockTypes lists the types of blocks, for messages.
func blockTypes(blocks []*pem.Block) string {
	var ts []string
	for _, b := range blocks {
		ts = append(ts, fmt.Sprintf("%q", b.Type))
	}
	return strings.Join(ts, ", ")
}

// isKeyBlock reports whether a PEM block holds a private key.
func isKeyBlock(b *pem.Block) bool {
	return b.Type == "PRIVATE KEY" || strings.HasSuffix(b.Type, " PRIVATE KEY")
}

// parseCerts returns the certificates of the PEM data of a cert or CA
// file; what says which ("the certificate chain", "the CA
// certificates").
func parseCerts(data []byte, what string) ([]*x509.Certificate, error) {
	blocks, _ := pemBlocks(data)
	if len(blocks) == 0 {
		return nil, fmt.Errorf("no valid PEM block: it must hold %s as PEM blocks (-----BEGIN CERTIFICATE-----); "+
			"a DER file converts with `openssl x509 -inform der -in FILE -out FILE.pem`", what)
	}
	var certs []*x509.Certificate
	for _, b := range blocks {
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d of the file is not valid: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		for _, b := range blocks {
			if isKeyBlock(b) {
				return nil, fmt.Errorf("it holds a private key, not a certificate: "+
					"is it the key file? It must hold %s (-----BEGIN CERTIFICATE-----)", what)
			}
		}
		return nil, fmt.Errorf("no certificate in it (it holds %s): it must hold %s (-----BEGIN CERTIFICATE-----)",
			blockTypes(blocks), what)
	}
	return certs, nil
}

// parseKey returns the private key of a key file's PEM data.
func parseKey(data []byte) (crypto.Signer, error) {
	blocks, _ := pemBlocks(data)
	if len(blocks) == 0 {
		return nil, errors.New("no valid PEM block: it must hold the private key as a PEM block (-----BEGIN PRIVATE KEY-----)")
	}
	var kb *pem.Block
	for _, b := range blocks {
		if isKeyBlock(b) {
			kb = b
			break
		}
	}
	if kb == nil {
		for _, b := range blocks {
			if b.Type == "CERTIFICATE" {
				return nil, errors.New("it holds a certificate, not a private key: " +
					"is it the certificate file? It must hold the private key (-----BEGIN PRIVATE KEY-----)")
			}
		}
		return nil, fmt.Errorf("no private key in it (it holds %s): it must hold the private key (-----BEGIN PRIVATE KEY-----)",
			blockTypes(blocks))
	}
	if kb.Type == "ENCRYPTED PRIVATE KEY" || kb.Headers["Proc-Type"] != "" {
		return nil, errors.New("the private key is encrypted: lb needs it unencrypted " +
			"(`openssl pkey -in FILE -out FILE.plain`, then keep that file readable by lb alone)")
	}
	var key any
	var err error
	switch kb.Type {
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(kb.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(kb.Bytes)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), "asn1:") {
			err = &shortError{"malformed ASN.1 data", err}
		}
		return nil, fmt.Errorf("the %s block is not a valid private key: %w", kb.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		return k, nil
	case *ecdsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("a %T cannot sign TLS handshakes: use an RSA, ECDSA or Ed25519 key", key)
}

// shortError is err with a message of its own, for causes whose text is
// no help to a user (an ASN.1 parser's dump of its state).
type shortError struct {
	msg string
	err error
}

// Error returns the short message.
func (e *shortError) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *shortError) Unwrap() error { return e.err }

// loadPair reads and checks certificate i.
func loadPair(i int, c Cert, now time.Time) (tls.Certificate, error) {
	certErr := func(err error) error { return &FileError{Key: KeyCertFile, Index: i, Path: c.CertFile, Err: err} }
	keyErr := func(err error) error { return &FileError{Key: KeyKeyFile, Index: i, Path: c.KeyFile, Err: err} }
	if c.CertFile == "" {
		return tls.Certificate{}, certErr(errors.New("no path: set cert_file to the certificate chain's PEM file"))
	}
	if c.KeyFile == "" {
		return tls.Certificate{}, keyErr(errors.New("no path: set key_file to the private key's PEM file"))
	}
	data, err := readFile(c.CertFile, "the certificate chain")
	if err != nil {
		return tls.Certificate{}, certErr(err)
	}
	chain, err := parseCerts(data, "the certificate chain")
	if err != nil {
		return tls.Certificate{}, certErr(err)
	}
	leaf := chain[0]
	if now.After(leaf.NotAfter) {
		return tls.Certificate{}, certErr(fmt.Errorf("the certificate (%s) expired on %s: renew it",
			describe(leaf), leaf.NotAfter.UTC().Format("2006-01-02 15:04:05 UTC")))
	}
	if leaf.IsCA && len(chain) > 1 {
		return tls.Certificate{}, certErr(fmt.Errorf("the first certificate (%s) is a CA's: "+
			"the server's own certificate comes first, then the intermediates", describe(leaf)))
	}
	data, err = readFile(c.KeyFile, "the private key")
	if err != nil {
		return tls.Certificate{}, keyErr(err)
	}
	key, err := parseKey(data)
	if err != nil {
		return tls.Certificate{}, keyErr(err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return tls.Certificate{}, keyErr(fmt.Errorf("the key does not match the certificate (%s) of cert_file %q: "+
			"give the key the certificate was issued for", describe(leaf), c.CertFile))
	}
	pair := tls.Certificate{PrivateKey: key, Leaf: leaf}
	for _, cert := range chain {
		pair.Certificate = append(pair.Certificate, cert.Raw)
	}
	return pair, nil
}

// describe names a certificate for messages: its names, or its subject.
func describe(c *x509.Certificate) string {
	var names []string
	names = append(names, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "subject " + c.Subject.String()
	}
	if len(names) > 4 {
		names = append(names[:4], fmt.Sprintf("and %d more", len(names)-4))
	}
	return "for " + strings.Join(names, ", ")
}

// loadCAs reads a CA file into a pool.
func loadCAs(path string) (*x509.CertPool, error) {
	caErr := func(err error) error { return &FileError{Key: KeyCAFile, Index: -1, Path: path, Err: err} }
	data, err := readFile(path, "the CA certificates")
	if err != nil {
		return nil, caErr(err)
	}
	certs, err := parseCerts(data, "the CA certificates")
	if err != nil {
		return nil, caErr(err)
	}
	pool := x509.NewCertPool()
	for _, c := range certs {
		pool.AddCert(c)
	}
	return pool, nil
}
