// Package testcert makes certificates for tests: a throw-away certificate
// authority and leaf certificates it signs, in memory or written to PEM
// files. Every key is ECDSA P-256, which keeps generation fast.
//
// It is for tests only: every function takes a testing.TB and fails the
// test on error, and the keys are written without protection.
package testcert

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority.
type CA struct {
	// Cert is the CA's self-signed certificate.
	Cert *x509.Certificate
	// Key is the CA's private key, which signs the leaves.
	Key crypto.Signer
	// CertPEM is Cert in PEM form.
	CertPEM []byte
}

// validity is how long certificates made with the default validity last:
// from an hour ago (so a slightly slow clock does not matter) to a day from
// now.
func validity() (notBefore, notAfter time.Time) {
	now := time.Now()
	return now.Add(-time.Hour), now.Add(24 * time.Hour)
}

// serial returns a random 128-bit serial number.
func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		t.Fatalf("testcert: serial number: %v", err)
	}
	return n
}

// newKey returns a new ECDSA P-256 key.
func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("testcert: generate key: %v", err)
	}
	return k
}

// NewCA returns a new certificate authority (ECDSA P-256), valid from an
// hour ago to a day from now.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key := newKey(t)
	notBefore, notAfter := validity()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "lb test CA", Organization: []string{"lb tests"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("testcert: create CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("testcert: parse CA certificate: %v", err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Leaf returns a new leaf certificate for names, signed by ca and valid
// from an hour ago to a day from now, and its private key, both PEM. Each
// name is a DNS name ("a.test", "*.a.test") or an IP literal ("127.0.0.1",
// "::1"); the first is also the subject's common name. certPEM holds the
// leaf alone, not the CA certificate: clients verify it with ca.Pool() or
// the file WriteCA writes. The key is PKCS #8 ("PRIVATE KEY").
func (ca *CA) Leaf(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	notBefore, notAfter := validity()
	return ca.LeafValidity(t, notBefore, notAfter, names...)
}

// LeafValidity is Leaf with the given validity period: an expired
// certificate, or one not valid yet.
func (ca *CA) LeafValidity(t testing.TB, notBefore, notAfter time.Time, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{Organization: []string{"lb tests"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatalf("testcert: create leaf certificate for %v: %v", names, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("testcert: encode leaf key: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

// WriteLeaf makes a leaf as Leaf does and writes it to dir/base.crt and its
// key to dir/base.key, and returns the two paths.
func (ca *CA) WriteLeaf(t testing.TB, dir, base string, names ...string) (certFile, keyFile string) {
	t.Helper()
	certPEM, keyPEM := ca.Leaf(t, names...)
	certFile = filepath.Join(dir, base+".crt")
	keyFile = filepath.Join(dir, base+".key")
	write(t, certFile, certPEM)
	write(t, keyFile, keyPEM)
	return certFile, keyFile
}

// WriteCA writes the CA certificate to dir/ca.crt and returns its path.
func (ca *CA) WriteCA(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ca.crt")
	write(t, path, ca.CertPEM)
	return path
}

// Pool returns a pool holding the CA certificate alone, for a client's
// RootCAs or a server's ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// write writes data to path, readable by its owner only (a key among the
// files).
func write(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("testcert: %v", err)
	}
}
