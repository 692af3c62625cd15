package main

// The HTTPS measures (issue 14): lb and HAProxy terminate TLS with the same
// certificates, and h2load, pinned to the load CPU, is the client.
//
//   - h2: HTTP/2 over TLS, h2load -c 20 -m 10 for -duration, ECDSA
//     certificate: req/s and CPU per request.
//   - tls-ecdsa, tls-rsa: new TLS connections, each with 10 HTTP/1.1
//     requests (h2load --h1 -c 200 -n 2000, tlsRuns times): CPU per
//     connection, with an ECDSA P-256 certificate, then an RSA 2048 one.
//   - https-bulk: 1 MiB responses downloaded over HTTPS (HTTP/1.1, 4
//     connections), -bulk-gb of them: CPU per GB.

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// HTTPS measures' settings.
const (
	// h2Clients and h2Streams are h2load's -c and -m in the h2 measure.
	h2Clients, h2Streams = 20, 10
	// tlsConns and tlsRequests make one run of the TLS measures:
	// tlsConns connections, tlsRequests requests each; tlsRuns runs.
	tlsConns, tlsRequests, tlsRuns = 200, 10, 10
	// tlsRunBound bounds one run of a TLS measure (about a second).
	tlsRunBound = 30 * time.Second
	// bigBody is the size of a response of the https-bulk measure.
	bigBody = 1 << 20
	// bulkHTTPSConns is how many connections download at once.
	bulkHTTPSConns = 4
)

// certFiles are a certificate and its key, in files: apart for lb, and
// together (crt) for HAProxy.
type certFiles struct {
	cert, key, crt string
}

// writeCerts writes a self-signed certificate for 127.0.0.1 with an ECDSA
// P-256 key, and one with an RSA 2048 key, in dir.
func writeCerts(dir string) (ec, rs certFiles, err error) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ec, rs, err
	}
	if ec, err = writeCert(dir, "ecdsa", ecKey); err != nil {
		return ec, rs, err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return ec, rs, err
	}
	rs, err = writeCert(dir, "rsa", rsaKey)
	return ec, rs, err
}

// writeCert writes a self-signed certificate for key in dir, as name.crt,
// name.key and name.pem (both).
func writeCert(dir, name string, key crypto.Signer) (certFiles, error) {
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "bench-core " + name},
		DNSNames:     []string{"lb.bench"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return certFiles{}, fmt.Errorf("%s certificate: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return certFiles{}, fmt.Errorf("%s key: %w", name, err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	f := certFiles{cert: filepath.Join(dir, name+".crt"), key: filepath.Join(dir, name+".key"), crt: filepath.Join(dir, name+".pem")}
	for path, data := range map[string][]byte{f.cert: certPEM, f.key: keyPEM, f.crt: append(append([]byte{}, certPEM...), keyPEM...)} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return certFiles{}, err
		}
	}
	return f, nil
}

// h2loadResult is what h2load reports.
type h2loadResult struct {
	requests, succeeded, failed int64 // done, 2xx, not 2xx or errored
	duration                    time.Duration
	bytes                       int64 // the responses' bodies ("data")
}

// runH2load runs `taskset -c cpus h2load args... url`, bounded by bound,
// and parses what it prints.
func runH2load(ctx context.Context, h2load, cpus string, bound time.Duration, url string, args ...string) (h2loadResult, error) {
	out, err := runPinned(ctx, cpus, bound, append(append([]string{h2load}, args...), url)...)
	if err != nil {
		return h2loadResult{}, err
	}
	r, err := parseH2load(out)
	if err != nil {
		return h2loadResult{}, fmt.Errorf("h2load's output: %w:\n%s", err, bytes.TrimSpace(out))
	}
	return r, nil
}

var (
	h2loadFinished = regexp.MustCompile(`^finished in ([0-9.]+)(s|ms|us),`)
	h2loadRequests = regexp.MustCompile(`^requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
	h2loadStatus   = regexp.MustCompile(`^status codes: (\d+) 2xx`)
	h2loadTraffic  = regexp.MustCompile(`\((\d+)\) data`)
)

// parseH2load parses the report of h2load (nghttp2 1.52):
//
//	finished in 5.00s, 28123.40 req/s, 3.54MB/s
//	requests: 140617 total, 140817 started, 140617 done, 140617 succeeded, 0 failed, 0 errored, 0 timeout
//	status codes: 140617 2xx, 0 3xx, 0 4xx, 0 5xx
//	traffic: 17.71MB (18566760) total, 1.21MB (1265553) headers (space savings 95.39%), 16.09MB (16873944) data
//
// A request counts as succeeded when it was answered 2xx.
func parseH2load(out []byte) (h2loadResult, error) {
	var r h2loadResult
	var haveFinished, haveRequests, haveStatus bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if m := h2loadFinished.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			unit := map[string]time.Duration{"s": time.Second, "ms": time.Millisecond, "us": time.Microsecond}[m[2]]
			r.duration, haveFinished = time.Duration(v*float64(unit)), true
		}
		if m := h2loadRequests.FindStringSubmatch(line); m != nil {
			done, _ := strconv.ParseInt(m[2], 10, 64)
			failed, _ := strconv.ParseInt(m[4], 10, 64)
			errored, _ := strconv.ParseInt(m[5], 10, 64)
			r.requests, r.failed, haveRequests = done, failed+errored, true
		}
		if m := h2loadStatus.FindStringSubmatch(line); m != nil {
			r.succeeded, _ = strconv.ParseInt(m[1], 10, 64)
			haveStatus = true
		}
		if strings.HasPrefix(line, "traffic:") {
			if m := h2loadTraffic.FindStringSubmatch(line); m != nil {
				r.bytes, _ = strconv.ParseInt(m[1], 10, 64)
			}
		}
	}
	if !haveFinished || !haveRequests || !haveStatus {
		return r, errors.New("no finished, requests or status codes line")
	}
	return r, nil
}

// measureH2 runs h2load over HTTP/2 and TLS through p's ECDSA frontend,
// for -duration after a warm-up, and records req/s and p's CPU time per
// request: in front of the HTTP/1.1 backend (measure "h2"), the same
// with HAProxy sending the headers lb sends by default ("h2-fwd"), or in
// front of the HTTP/2 backend ("h2-h2").
func (r *runner) measureH2(ctx context.Context, round int, p *proxy, measure string) {
	in, err := r.startProxy(ctx, p)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	defer r.stopProxy(in)
	url := "https://" + in.fe.https + "/bench"
	switch measure {
	case "h2-h2":
		url = "https://" + in.fe.httpsH2 + "/bench"
	case "h2-fwd":
		url = "https://" + in.fe.httpsFwd + "/bench"
	}
	load := func(d time.Duration) (h2loadResult, error) {
		secs := strconv.Itoa(max(int(d/time.Second), 1))
		return runH2load(ctx, r.h2load, r.o.loadCPU, d+wrkSlack, url,
			"-c", strconv.Itoa(h2Clients), "-m", strconv.Itoa(h2Streams), "-D", secs)
	}
	if r.o.warmup > 0 {
		if _, err := load(r.o.warmup); err != nil {
			r.fail(ctx, round, measure, p.name, fmt.Errorf("warm-up: %w", err))
			return
		}
	}
	win := r.openWindow(in)
	res, err := load(r.o.duration)
	r.closeWindow(&win, measure, p.name, round)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = in.alive(" during the measurement")
	}
	if err == nil && res.succeeded <= 0 {
		err = fmt.Errorf("no request answered 2xx (%d done)", res.requests)
	}
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	if res.failed > 0 || res.succeeded < res.requests {
		r.res.note("round %d: %s: %s: %d of %d requests failed or were not 2xx", round+1, measure, p.name, res.requests-res.succeeded, res.requests)
	}
	rps := float64(res.succeeded) / res.duration.Seconds()
	r.res.set(measure+".rps", p.name, round, rps)
	line := fmt.Sprintf("round %d/%d: %s: %s: %.0f req/s", round+1, r.o.rounds, measure, p.name, rps)
	if win.proxyOK {
		us := float64(win.proxy.Microseconds()) / float64(res.succeeded)
		r.res.set(measure+".cpu_us", p.name, round, us)
		line += fmt.Sprintf(", %.1f µs CPU per request", us)
	}
	logf("%s%s", line, win.String())
}

// measureTLS opens tlsRuns x tlsConns new TLS connections through p's
// ECDSA (measure "tls-ecdsa") or RSA ("tls-rsa") frontend, tlsRequests
// HTTP/1.1 requests on each, and records p's CPU time per connection.
func (r *runner) measureTLS(ctx context.Context, round int, p *proxy, measure string) {
	in, err := r.startProxy(ctx, p)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	defer r.stopProxy(in)
	addr := in.fe.https
	if measure == "tls-rsa" {
		addr = in.fe.httpsRSA
	}
	url := "https://" + addr + "/bench"
	run := func() (h2loadResult, error) {
		return runH2load(ctx, r.h2load, r.o.loadCPU, tlsRunBound, url, "--h1",
			"-c", strconv.Itoa(tlsConns), "-n", strconv.Itoa(tlsConns*tlsRequests))
	}
	if _, err := run(); err != nil { // warm-up
		r.fail(ctx, round, measure, p.name, fmt.Errorf("warm-up: %w", err))
		return
	}
	win := r.openWindow(in)
	var done, ok int64
	for range tlsRuns {
		res, err := run()
		if err != nil {
			r.closeWindow(&win, measure, p.name, round)
			r.fail(ctx, round, measure, p.name, err)
			return
		}
		done, ok = done+res.requests, ok+res.succeeded
	}
	r.closeWindow(&win, measure, p.name, round)
	if ctx.Err() != nil {
		return
	}
	if err := in.alive(" during the measurement"); err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	if want := int64(tlsRuns * tlsConns * tlsRequests); ok != want {
		r.res.note("round %d: %s: %s: %d of %d requests answered 2xx (%d done)", round+1, measure, p.name, ok, want, done)
	}
	line := fmt.Sprintf("round %d/%d: %s: %s: %d connections", round+1, r.o.rounds, measure, p.name, tlsRuns*tlsConns)
	if win.proxyOK {
		ms := win.proxy.Seconds() * 1000 / float64(tlsRuns*tlsConns)
		r.res.set(measure+".cpu_ms", p.name, round, ms)
		line += fmt.Sprintf(", %.3f ms CPU per connection", ms)
	}
	logf("%s%s", line, win.String())
}

// measureHTTPSBulk downloads -bulk-gb GB of 1 MiB responses over HTTPS
// (HTTP/1.1, bulkHTTPSConns connections) through p's bulk frontend, and
// records p's CPU seconds per GB.
func (r *runner) measureHTTPSBulk(ctx context.Context, round int, p *proxy) {
	const measure = "https-bulk"
	in, err := r.startProxy(ctx, p)
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	defer r.stopProxy(in)
	n := max(int(r.o.bulkGB*1e9/bigBody), bulkHTTPSConns)
	win := r.openWindow(in)
	res, err := runH2load(ctx, r.h2load, r.o.loadCPU, r.o.bulkBound(), "https://"+in.fe.httpsBulk+"/big", "--h1",
		"-c", strconv.Itoa(bulkHTTPSConns), "-n", strconv.Itoa(n))
	r.closeWindow(&win, measure, p.name, round)
	if ctx.Err() != nil {
		return
	}
	if err == nil {
		err = in.alive(" during the measurement")
	}
	if err == nil && (res.succeeded != int64(n) || res.bytes < int64(n)*bigBody) {
		err = fmt.Errorf("%d of %d downloads answered 2xx, %d bytes of %d", res.succeeded, n, res.bytes, int64(n)*bigBody)
	}
	if err != nil {
		r.fail(ctx, round, measure, p.name, err)
		return
	}
	gb := float64(res.bytes) / 1e9
	r.res.set(measure+".gbps", p.name, round, gb/res.duration.Seconds())
	line := fmt.Sprintf("round %d/%d: %s: %s: %.2f GB in %v", round+1, r.o.rounds, measure, p.name, gb, res.duration.Round(time.Millisecond))
	if win.proxyOK {
		r.res.set(measure+".cpu_per_gb", p.name, round, win.proxy.Seconds()/gb)
		line += fmt.Sprintf(", %.3f CPU s per GB", win.proxy.Seconds()/gb)
	}
	logf("%s%s", line, win.String())
}
