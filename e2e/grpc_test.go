package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"lb/internal/testcert"
)

// gRPC through lb, with google.golang.org/grpc's own clients and servers:
// HTTP/2 over TLS (or h2c) from the client to lb, h2c or TLS from lb to
// the server (proto = "h2"). The messages are raw bytes (a codec of the
// test's own), so that no generated code is needed.

// rawCodec marshals *[]byte as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "lbraw" }

func init() { encoding.RegisterCodec(rawCodec{}) }

// grpcServer is the test's gRPC service, lbtest.Echo:
//   - Unary: "echo:X" answers X, with header and trailer metadata;
//     "fail:CODE" fails with that code; "sleep:D" waits D or until the
//     call ends, and reports how it ended on ended;
//   - ServerStream: "N:D" sends N numbered messages D apart (N = 0: until
//     the call ends, reported on ended);
//   - ClientStream: answers the messages joined with "+";
//   - Bidi: answers each message with "re:" and it; "abort" ends the call
//     with codes.Aborted.
type grpcServer struct {
	name  string
	ln    net.Listener
	srv   *grpc.Server
	ended chan error // how calls that wait for their end ended
	calls atomic.Int64
}

func startGRPCServer(t *testing.T, name string, tc *tls.Config) *grpcServer {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if tc != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(tc)))
	}
	g := &grpcServer{name: name, ln: ln, srv: grpc.NewServer(opts...), ended: make(chan error, 100)}
	g.srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: "lbtest.Echo",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Unary", Handler: g.unary}},
		Streams: []grpc.StreamDesc{
			{StreamName: "ServerStream", Handler: g.serverStream, ServerStreams: true},
			{StreamName: "ClientStream", Handler: g.clientStream, ClientStreams: true},
			{StreamName: "Bidi", Handler: g.bidi, ServerStreams: true, ClientStreams: true},
		},
	}, struct{}{})
	go func() { _ = g.srv.Serve(ln) }()
	t.Cleanup(g.srv.Stop)
	return g
}

func (g *grpcServer) addr() string { return g.ln.Addr().String() }

func (g *grpcServer) unary(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	g.calls.Add(1)
	var in []byte
	if err := dec(&in); err != nil {
		return nil, err
	}
	verb, arg, _ := strings.Cut(string(in), ":")
	switch verb {
	case "echo":
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-server", g.name))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t-"+arg))
		out := []byte(arg)
		return &out, nil
	case "fail":
		code, _ := strconv.Atoi(arg)
		return nil, status.Errorf(codes.Code(code), "failed as asked by %s", g.name)
	case "sleep":
		d, _ := time.ParseDuration(arg)
		select {
		case <-time.After(d):
			g.ended <- nil
		case <-ctx.Done():
			g.ended <- ctx.Err()
		}
		out := []byte("slept")
		return &out, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, "unknown verb %q", verb)
}

func (g *grpcServer) serverStream(_ any, s grpc.ServerStream) error {
	g.calls.Add(1)
	var in []byte
	if err := s.RecvMsg(&in); err != nil {
		return err
	}
	ns, ds, _ := strings.Cut(string(in), ":")
	n, _ := strconv.Atoi(ns)
	d, _ := time.ParseDuration(ds)
	for i := 0; n == 0 || i < n; i++ {
		out := []byte(fmt.Sprintf("%s-%d", g.name, i))
		if err := s.SendMsg(&out); err != nil {
			return err
		}
		select {
		case <-time.After(d):
		case <-s.Context().Done():
			g.ended <- s.Context().Err()
			return s.Context().Err()
		}
	}
	return nil
}

func (g *grpcServer) clientStream(_ any, s grpc.ServerStream) error {
	g.calls.Add(1)
	var parts []string
	for {
		var in []byte
		err := s.RecvMsg(&in)
		if err == io.EOF {
			out := []byte(strings.Join(parts, "+"))
			return s.SendMsg(&out)
		}
		if err != nil {
			return err
		}
		parts = append(parts, string(in))
	}
}

func (g *grpcServer) bidi(_ any, s grpc.ServerStream) error {
	g.calls.Add(1)
	for {
		var in []byte
		err := s.RecvMsg(&in)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if string(in) == "abort" {
			return status.Error(codes.Aborted, "aborted as asked")
		}
		out := append([]byte("re:"), in...)
		if err := s.SendMsg(&out); err != nil {
			return err
		}
	}
}

// grpcDial returns a client connection to lb at addr: over TLS (lb's
// certificate is not checked) when secure, else h2c.
func grpcDial(t *testing.T, addr string, secure bool) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if secure {
		creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.CallContentSubtype("lbraw")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

var (
	serverStreamDesc = &grpc.StreamDesc{StreamName: "ServerStream", ServerStreams: true}
	clientStreamDesc = &grpc.StreamDesc{StreamName: "ClientStream", ClientStreams: true}
	bidiDesc         = &grpc.StreamDesc{StreamName: "Bidi", ServerStreams: true, ClientStreams: true}
)

func grpcUnary(ctx context.Context, cc *grpc.ClientConn, msg string, opts ...grpc.CallOption) (string, error) {
	in, out := []byte(msg), []byte(nil)
	err := cc.Invoke(ctx, "/lbtest.Echo/Unary", &in, &out, opts...)
	return string(out), err
}

// checkGRPCCalls makes every kind of call over cc, with base's metadata,
// and checks their answers, the servers' metadata and status codes; name
// is the server's.
func checkGRPCCalls(t *testing.T, base context.Context, cc *grpc.ClientConn, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(base, 20*time.Second)
	defer cancel()

	var header, trailer metadata.MD
	out, err := grpcUnary(ctx, cc, "echo:hi", grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil || out != "hi" || strings.Join(header.Get("x-server"), ",") != name || strings.Join(trailer.Get("x-trailer"), ",") != "t-hi" {
		t.Errorf("unary: %q, %v; header %v, trailer %v", out, err, header, trailer)
	}
	_, err = grpcUnary(ctx, cc, "fail:5")
	if st, _ := status.FromError(err); st.Code() != codes.NotFound || st.Message() != "failed as asked by "+name {
		t.Errorf("unary fail:5 (NotFound): %v", err)
	}

	s, err := cc.NewStream(ctx, serverStreamDesc, "/lbtest.Echo/ServerStream")
	if err != nil {
		t.Fatal(err)
	}
	in := []byte("5:10ms")
	if err := s.SendMsg(&in); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseSend()
	var got []string
	for {
		var m []byte
		if err := s.RecvMsg(&m); err != nil {
			if err != io.EOF {
				t.Errorf("server stream: %v", err)
			}
			break
		}
		got = append(got, string(m))
	}
	if want := fmt.Sprintf("%[1]s-0 %[1]s-1 %[1]s-2 %[1]s-3 %[1]s-4", name); strings.Join(got, " ") != want {
		t.Errorf("server stream: %q, want %q", got, want)
	}

	s, err = cc.NewStream(ctx, clientStreamDesc, "/lbtest.Echo/ClientStream")
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"a", "b", "c"} {
		m := []byte(part)
		if err := s.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
	}
	_ = s.CloseSend()
	var joined []byte
	if err := s.RecvMsg(&joined); err != nil || string(joined) != "a+b+c" {
		t.Errorf("client stream: %q, %v", joined, err)
	}

	s, err = cc.NewStream(ctx, bidiDesc, "/lbtest.Echo/Bidi")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		m := []byte(fmt.Sprint(i))
		if err := s.SendMsg(&m); err != nil {
			t.Fatal(err)
		}
		var r []byte
		if err := s.RecvMsg(&r); err != nil || string(r) != fmt.Sprintf("re:%d", i) {
			t.Fatalf("bidi message %d: %q, %v", i, r, err)
		}
	}
	m := []byte("abort")
	if err := s.SendMsg(&m); err != nil {
		t.Fatal(err)
	}
	var r []byte
	if err := s.RecvMsg(&r); status.Code(err) != codes.Aborted {
		t.Errorf("bidi abort: %q, %v, want Aborted", r, err)
	}
}

// TestGRPC: every kind of call through lb, from clients over TLS and h2c,
// to servers over h2c and TLS; deadlines and cancellation reach the
// server.
func TestGRPC(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t)
	crt, key := ca.WriteLeaf(t, dir, "srv", "127.0.0.1")
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	plain := startGRPCServer(t, "h2c", nil)
	secure := startGRPCServer(t, "tls", &tls.Config{Certificates: []tls.Certificate{cert}})
	lbCrt, lbKey := ca.WriteLeaf(t, dir, "lb", "127.0.0.1")
	// httpConfig's plain frontend (h2c), and one over TLS; both send the
	// requests that say X-To: tls to the TLS server.
	tlsPort := freePort(t)
	route := "[[frontend.route]]\nheader = [\"X-To: tls\"]\nbackend = \"secure\"\n"
	frontends := fmt.Sprintf("%s\n[[frontend]]\nname = \"tls\"\nbind = [\"127.0.0.1:%d\"]\ndefault_backend = \"app\"\n\n"+
		"[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n\n%s", route, tlsPort, lbCrt, lbKey, route)
	backends := fmt.Sprintf("[[backend]]\nname = \"app\"\nproto = \"h2\"\n%s\n[[backend]]\nname = \"secure\"\nproto = \"h2\"\n\n"+
		"[backend.tls]\nenabled = true\nca_file = %q\n%s", serverLine("h2c", plain.addr(), ""), ca.WriteCA(t, dir), serverLine("tls", secure.addr(), ""))
	_, addr := startHTTPLB(t, "", frontends, backends)

	for _, client := range []struct {
		name   string
		addr   string
		secure bool
	}{{"TLS", fmt.Sprintf("127.0.0.1:%d", tlsPort), true}, {"h2c", addr, false}} {
		cc := grpcDial(t, client.addr, client.secure)
		for _, srv := range []*grpcServer{plain, secure} {
			t.Run(client.name+" to "+srv.name, func(t *testing.T) {
				ctx := context.Background()
				if srv == secure {
					ctx = metadata.AppendToOutgoingContext(ctx, "x-to", "tls")
				}
				checkGRPCCalls(t, ctx, cc, srv.name)
			})
		}
	}

	cc := grpcDial(t, fmt.Sprintf("127.0.0.1:%d", tlsPort), true)
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		_, err := grpcUnary(ctx, cc, "sleep:10s")
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("a call past its deadline: %v, want DeadlineExceeded", err)
		}
		select {
		case err := <-plain.ended:
			if err == nil {
				t.Errorf("the server's call ran to its end")
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the server's call did not end within 5s of the client's deadline")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		s, err := cc.NewStream(ctx, serverStreamDesc, "/lbtest.Echo/ServerStream")
		if err != nil {
			t.Fatal(err)
		}
		in := []byte("0:20ms")
		if err := s.SendMsg(&in); err != nil {
			t.Fatal(err)
		}
		_ = s.CloseSend()
		for range 3 {
			var m []byte
			if err := s.RecvMsg(&m); err != nil {
				t.Fatal(err)
			}
		}
		cancel()
		select {
		case err := <-plain.ended:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the server's stream ended with %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("the server's stream did not end within 5s of the client's cancel")
		}
	})
}

// TestGRPCReloads reloads lb 20 times, on a fixed cadence, while
// bidirectional streams exchange messages and unary calls go on: every
// stream finishes on the generation that took it, and no call fails.
func TestGRPCReloads(t *testing.T) {
	hrFastExit(t)
	g := startGRPCServer(t, "g", nil)
	d := newDaemons(t, "")
	ca := testcert.NewCA(t)
	certFile, keyFile := ca.WriteLeaf(t, d.dir, "lb", "127.0.0.1")
	tlsTable := fmt.Sprintf("[frontend.tls]\ncert = [{ cert_file = %q, key_file = %q }]\n", certFile, keyFile)
	backend := "proto = \"h2\"\n\n[backend.check]\ntype = \"none\"\n\n" + serverLine(g.name, g.addr(), "")
	d.writeConfig(daemonConfigMode(d.dir, d.port, `close_spread_time = "300ms"`, "http", tlsTable, backend))
	d.mustLaunch()
	cc := grpcDial(t, d.addr(), true)
	deadline := guardDeadline(t, 2*time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()

	stop := make(chan struct{})
	errs := make(chan error, 100)
	var wg sync.WaitGroup
	var exchanged, unaries atomic.Int64
	for i := range 4 {
		s, err := cc.NewStream(ctx, bidiDesc, "/lbtest.Echo/Bidi")
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			for n := 0; ; n++ {
				select {
				case <-stop:
					if err := s.CloseSend(); err != nil {
						errs <- fmt.Errorf("stream %d: closing: %w", i, err)
					}
					var m []byte
					if err := s.RecvMsg(&m); err != io.EOF {
						errs <- fmt.Errorf("stream %d: after %d messages, the end: %v, want io.EOF", i, n, err)
					}
					return
				case <-time.After(20 * time.Millisecond):
				}
				m := []byte(fmt.Sprintf("%d/%d", i, n))
				if err := s.SendMsg(&m); err != nil {
					errs <- fmt.Errorf("stream %d: message %d: %w", i, n, err)
					return
				}
				var r []byte
				if err := s.RecvMsg(&r); err != nil || string(r) != "re:"+string(m) {
					errs <- fmt.Errorf("stream %d: message %d: %q, %v", i, n, r, err)
					return
				}
				exchanged.Add(1)
			}
		})
	}
	for i := range 2 {
		wg.Go(func() {
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				msg := fmt.Sprintf("%d.%d", i, n)
				if out, err := grpcUnary(ctx, cc, "echo:"+msg); err != nil || out != msg {
					errs <- fmt.Errorf("unary %s: %q, %v", msg, out, err)
					return
				}
				unaries.Add(1)
			}
		})
	}

	const reloads = 20
	results := make(chan cmdResult, reloads)
	tick := time.NewTicker(250 * time.Millisecond)
	for range reloads {
		<-tick.C
		args := []string{lbBin, "-f", d.cfg, "-p", d.pidFile, "-D", "-sf"}
		if old := d.pid(); old != 0 {
			args = append(args, strconv.Itoa(old))
		}
		go func() { results <- runCmd(t, time.Minute, nil, args...) }()
	}
	tick.Stop()
	for range reloads {
		if r := <-results; r.code != 0 {
			t.Errorf("a reload failed: %s", r)
		}
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, p := range logPids(t, d.log()) {
		d.seen[p] = true
	}
	t.Logf("%d reloads: %d stream messages and %d unary calls, none failed", reloads, exchanged.Load(), unaries.Load())
	if exchanged.Load() < 100 || unaries.Load() < 100 {
		t.Errorf("too little traffic to prove anything: %d stream messages, %d unary calls", exchanged.Load(), unaries.Load())
	}
	if n := len(logPids(t, d.log())); n != reloads+1 {
		t.Errorf("%d generations started, want %d", n, reloads+1)
	}
	// The streams' generations exit once the streams are over.
	hrWaitOldGone(t, d, 20*time.Second)
}
