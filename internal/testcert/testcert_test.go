package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"strings"
	"testing"
	"time"
)

func TestLeafVerifiesAgainstCA(t *testing.T) {
	ca := NewCA(t)
	certPEM, keyPEM := ca.Leaf(t, "a.test", "127.0.0.1", "::1")
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	if n := len(pair.Certificate); n != 1 {
		t.Errorf("certPEM holds %d certificates, want the leaf alone", n)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a.test", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: ca.Pool()}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "b.test", Roots: ca.Pool()}); err == nil {
		t.Error("leaf for a.test verified for b.test")
	}
	if leaf.Subject.CommonName != "a.test" {
		t.Errorf("common name %q, want a.test", leaf.Subject.CommonName)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "a.test", Roots: NewCA(t).Pool()}); err == nil {
		t.Error("leaf verified against another CA")
	}
}

func TestLeafValidity(t *testing.T) {
	ca := NewCA(t)
	nb := time.Now().Add(-72 * time.Hour).Truncate(time.Second)
	na := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	certPEM, _ := ca.LeafValidity(t, nb, na, "old.test")
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("no PEM block")
	}
	leaf, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !leaf.NotBefore.Equal(nb) || !leaf.NotAfter.Equal(na) {
		t.Errorf("validity %v..%v, want %v..%v", leaf.NotBefore, leaf.NotAfter, nb, na)
	}
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: "old.test", Roots: ca.Pool()})
	if err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("verify of an expired leaf: %v, want an expiry error", err)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	ca := NewCA(t)
	certFile, keyFile := ca.WriteLeaf(t, dir, "web", "web.test")
	if want := dir + "/web.crt"; certFile != want {
		t.Errorf("cert file %s, want %s", certFile, want)
	}
	if want := dir + "/web.key"; keyFile != want {
		t.Errorf("key file %s, want %s", keyFile, want)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("LoadX509KeyPair: %v", err)
	}
	caFile := ca.WriteCA(t, dir)
	b, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	if p := x509.NewCertPool(); !p.AppendCertsFromPEM(b) {
		t.Errorf("%s holds no certificate", caFile)
	}
}
