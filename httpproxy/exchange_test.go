package httpproxy

import (
	"testing"

	"lb/h1"
)

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cookies []string
		want    string
		found   bool
	}{
		{"only", []string{"LBSRV=s1"}, "s1", true},
		{"among others", []string{"a=1; LBSRV=s2; b=2"}, "s2", true},
		{"second field", []string{"a=1", "b=2;LBSRV=s3"}, "s3", true},
		{"quoted", []string{`LBSRV="s4"`}, "s4", true},
		{"prefix of another name", []string{"LBSRVX=s5; XLBSRV=s6"}, "", false},
		{"no value", []string{"LBSRV"}, "", false},
		{"none", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h h1.Head
			for _, c := range tc.cookies {
				h.Add("Cookie", []byte(c))
			}
			got := cookieValue(&h, "LBSRV")
			if (got != nil) != tc.found || string(got) != tc.want {
				t.Errorf("cookieValue = %q (found %v), want %q (found %v)", got, got != nil, tc.want, tc.found)
			}
		})
	}
}

func TestCookieValueDoesNotAllocate(t *testing.T) {
	var h h1.Head
	h.Add("Cookie", []byte("a=1; b=2; LBSRV=s1"))
	if n := testing.AllocsPerRun(100, func() { _ = cookieValue(&h, "LBSRV") }); n != 0 {
		t.Errorf("cookieValue allocates %v times", n)
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "PUT": true, "DELETE": true, "OPTIONS": true, "TRACE": true, "POST": false, "PATCH": false, "get": false} {
		if got := idempotent([]byte(m)); got != want {
			t.Errorf("idempotent(%s) = %v, want %v", m, got, want)
		}
	}
}
