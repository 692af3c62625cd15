package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

func TestDescribe(t *testing.T) {
	t.Parallel()
	op := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, err)}
	}
	cases := []struct {
		name           string
		err            error
		reason, quoted string
	}{
		{"refused", op("connect", syscall.ECONNREFUSED), "connect refused", "connection refused"},
		{"reset", op("read", syscall.ECONNRESET), "connection reset", "connection reset by peer"},
		{"broken pipe", op("write", syscall.EPIPE), "connection reset", "broken pipe"},
		{"unreachable", op("connect", syscall.EHOSTUNREACH), "host unreachable", "no route to host"},
		{"deadline", &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, "timeout", "timeout"},
		{"context", fmt.Errorf("dial: %w", context.DeadlineExceeded), "timeout", "timeout"},
		{"other errno", op("connect", syscall.EACCES), "permission denied", "permission denied"},
		{"plain", errors.New("proxy: backend gone"), "proxy: backend gone", "proxy: backend gone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := describe(tc.err); got != tc.reason {
				t.Errorf("describe = %q, want %q", got, tc.reason)
			}
			if got := lastErrorText(tc.err); got != tc.quoted {
				t.Errorf("lastErrorText = %q, want %q", got, tc.quoted)
			}
		})
	}
	if got := badResponse(io.ErrUnexpectedEOF).reason; got != "bad HTTP response: connection closed early" {
		t.Errorf("badResponse(unexpected EOF) = %q", got)
	}
	wrapped := fmt.Errorf("check: %w", &checkError{reason: "timeout", err: os.ErrDeadlineExceeded})
	if got := reasonOf(wrapped); got != "timeout" {
		t.Errorf("reasonOf(wrapped) = %q", got)
	}
}

func TestStatusRanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		ranges [][2]int
		code   int
		ok     bool
		text   string
	}{
		{nil, 200, true, "200-399"},
		{nil, 399, true, "200-399"},
		{nil, 400, false, "200-399"},
		{nil, 199, false, "200-399"},
		{[][2]int{{200, 200}}, 204, false, "200"},
		{[][2]int{{200, 200}}, 200, true, "200"},
		{[][2]int{{200, 299}, {404, 404}}, 404, true, "200-299 or 404"},
		{[][2]int{{200, 299}, {404, 404}}, 403, false, "200-299 or 404"},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v/%d", tc.ranges, tc.code), func(t *testing.T) {
			t.Parallel()
			if got := statusOK(tc.code, tc.ranges); got != tc.ok {
				t.Errorf("statusOK = %v", got)
			}
			if got := formatRanges(tc.ranges); got != tc.text {
				t.Errorf("formatRanges = %q, want %q", got, tc.text)
			}
		})
	}
}

func TestBuildRequest(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		set  Settings
		want string
	}{
		{"defaults", Settings{Addr: "10.0.0.1:8080"},
			"GET / HTTP/1.1\r\nHost: 10.0.0.1\r\nUser-Agent: lb-health-check\r\nConnection: close\r\n\r\n"},
		{"ipv6", Settings{Addr: "[::1]:80", Path: "/ping"},
			"GET /ping HTTP/1.1\r\nHost: [::1]\r\nUser-Agent: lb-health-check\r\nConnection: close\r\n\r\n"},
		{"all set", Settings{Addr: "10.0.0.1:80", Method: "HEAD", Path: "/h?x=1", Host: "app.example:8443"},
			"HEAD /h?x=1 HTTP/1.1\r\nHost: app.example:8443\r\nUser-Agent: lb-health-check\r\nConnection: close\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := buildRequest(&tc.set)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("request:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
