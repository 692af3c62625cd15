package fdlimit

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestRaiseRaisesTheSoftLimitToTheHardLimit(t *testing.T) {
	var r unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if r.Max < 512 {
		t.Skipf("hard limit %d: too low to lower the soft limit below it", r.Max)
	}
	low := unix.Rlimit{Cur: 256, Max: r.Max}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Setrlimit(unix.RLIMIT_NOFILE, &r) })
	lim, err := Raise()
	if err != nil {
		t.Fatal(err)
	}
	if lim.Soft != r.Max || lim.Hard != r.Max || Current() != r.Max {
		t.Fatalf("after Raise: %+v, current %d; want soft = hard = %d", lim, Current(), r.Max)
	}
	if lim.Int() != int(r.Max) {
		t.Fatalf("Int() = %d, want %d", lim.Int(), r.Max)
	}
}
