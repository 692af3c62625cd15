package fdlimit

import (
	"strings"
	"testing"
)

func TestComputeDerivesMaxConnFromTheLimit(t *testing.T) {
	const fixed1 = Reserve + 2*SplicePipes + 1 // one listener
	for _, tc := range []struct {
		name  string
		plan  Plan
		limit int
		// want is the maxconn of each frontend.
		want      []int
		derived   []bool
		wantFixed int
		wantNeed  int
	}{
		{
			name:  "one TCP frontend takes the whole limit, two descriptors a connection",
			plan:  Plan{Frontends: []Frontend{{Name: "a", Listeners: 1, PerConn: TCPConn}}},
			limit: 1024,
			want:  []int{(1024 - fixed1) / 2}, derived: []bool{true},
			wantFixed: fixed1, wantNeed: fixed1 + (1024-fixed1)/2*2,
		},
		{
			name: "frontends without maxconn share what the others leave, first come, first served (each may take it all)",
			plan: Plan{Frontends: []Frontend{
				{Name: "tcp", Listeners: 1, PerConn: TCPConn},
				{Name: "http", Listeners: 2, PerConn: HTTPConn},
				{Name: "set", Listeners: 1, MaxConn: 100, PerConn: TCPConn},
			}},
			limit: 10000,
			// fixed = reserve + pipes + 4 listeners; rest = 10000 - fixed - 200.
			want:      []int{(10000 - (fixed1 + 3) - 200) / 2, 10000 - (fixed1 + 3) - 200, 100},
			derived:   []bool{true, true, false},
			wantFixed: fixed1 + 3,
			wantNeed:  10000,
		},
		{
			name: "checks, server connections, the admin socket and the log file come off the top",
			plan: Plan{Frontends: []Frontend{{Name: "a", Listeners: 1, PerConn: HTTPConn}},
				ServerConns: 50, Checks: 7, AdminSocket: true, LogFile: true},
			limit:     1000,
			want:      []int{1000 - (fixed1 + 50 + 7 + AdminDescriptors + 1)},
			derived:   []bool{true},
			wantFixed: fixed1 + 50 + 7 + AdminDescriptors + 1,
			wantNeed:  1000,
		},
		{
			name:  "an explicit maxconn is kept, even when the limit cannot cover it",
			plan:  Plan{Frontends: []Frontend{{Name: "a", Listeners: 1, MaxConn: 5000, PerConn: TCPConn}}},
			limit: 1024,
			want:  []int{5000}, derived: []bool{false},
			wantFixed: fixed1, wantNeed: fixed1 + 10000,
		},
		{
			name: "when explicit maxconn take more than the limit, the others may still take what the limit leaves",
			plan: Plan{Frontends: []Frontend{
				{Name: "big", Listeners: 1, MaxConn: 100000, PerConn: TCPConn},
				{Name: "auto", Listeners: 1, PerConn: TCPConn},
			}},
			limit: 4096,
			want:  []int{100000, (4096 - fixed1 - 1) / 2}, derived: []bool{false, true},
			wantFixed: fixed1 + 1, wantNeed: fixed1 + 1 + 200000 + (4096-fixed1-1)/2*2,
		},
		{
			name:  "a limit below lb's own needs still gives maxconn 1",
			plan:  Plan{Frontends: []Frontend{{Name: "a", Listeners: 1, PerConn: TCPConn}}},
			limit: 40,
			want:  []int{1}, derived: []bool{true},
			wantFixed: fixed1, wantNeed: fixed1 + 2,
		},
		{
			name:  "a huge hard limit is planned as MaxLimit for defaults",
			plan:  Plan{Frontends: []Frontend{{Name: "a", Listeners: 1, PerConn: TCPConn}}},
			limit: 1 << 30,
			want:  []int{(MaxLimit - fixed1) / 2}, derived: []bool{true},
			wantFixed: fixed1, wantNeed: fixed1 + (MaxLimit-fixed1)/2*2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Compute(tc.plan, tc.limit)
			if r.Fixed != tc.wantFixed || r.Need != tc.wantNeed || r.Limit != tc.limit {
				t.Errorf("fixed %d, need %d, limit %d; want %d, %d, %d", r.Fixed, r.Need, r.Limit, tc.wantFixed, tc.wantNeed, tc.limit)
			}
			if len(r.Frontends) != len(tc.want) {
				t.Fatalf("%d frontends, want %d", len(r.Frontends), len(tc.want))
			}
			for i, f := range r.Frontends {
				if f.MaxConn != tc.want[i] || f.Derived != tc.derived[i] || f.Name != tc.plan.Frontends[i].Name {
					t.Errorf("frontend %d: %+v, want %q maxconn %d derived %v", i, f, tc.plan.Frontends[i].Name, tc.want[i], tc.derived[i])
				}
			}
			if want := max(tc.limit-r.Fixed, 2); r.Budget != want {
				t.Errorf("budget %d, want %d", r.Budget, want)
			}
			if r.Covered() != (r.Need <= tc.limit) {
				t.Errorf("Covered() = %v with need %d and limit %d", r.Covered(), r.Need, tc.limit)
			}
		})
	}
}

// Frontends that all get a derived maxconn never need more than the limit:
// lb never accepts more than it can serve.
func TestDerivedMaxConnAlwaysFits(t *testing.T) {
	for limit := 100; limit <= 200000; limit = limit*3 + 7 {
		for n := 1; n <= 5; n++ {
			var p Plan
			for i := range n {
				p.Frontends = append(p.Frontends, Frontend{Name: "f", Listeners: i%2 + 1, PerConn: 1 + i%2})
			}
			p.Checks = n * 3
			r := Compute(p, limit)
			if r.Fixed+3*n < limit && !r.Covered() {
				t.Errorf("limit %d, %d frontends: need %d is over the limit: %s", limit, n, r.Need, r.Warning())
			}
			if r.Covered() && r.Need > r.Fixed+r.Budget {
				t.Errorf("limit %d, %d frontends: need %d, but the budget %d + fixed %d is less", limit, n, r.Need, r.Budget, r.Fixed)
			}
		}
	}
}

func TestWarningNamesTheNumbersAndWhatToSet(t *testing.T) {
	r := Compute(Plan{Frontends: []Frontend{{Name: "web", Listeners: 1, MaxConn: 1000, PerConn: TCPConn}}}, 80)
	w := r.Warning()
	for _, want := range []string{
		"file descriptor limit (80)",
		"needs (2065 = ",
		`frontend "web": maxconn 1000 x 2`,
		"hold 15 descriptors (7 connections)",
		"accept queue",
		"LimitNOFILE=2065",
		`"ulimit -n 2065"`,
		`"docker run --ulimit nofile=2065:2065"`,
		"lower maxconn",
	} {
		if !strings.Contains(w, want) {
			t.Errorf("warning lacks %q:\n%s", want, w)
		}
	}
	if r := Compute(Plan{Frontends: []Frontend{{Name: "web", Listeners: 1, PerConn: TCPConn}}}, 4096); r.Warning() != "" {
		t.Errorf("warning with a derived maxconn that fits: %s", r.Warning())
	}
}
