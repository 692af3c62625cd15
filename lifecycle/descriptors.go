package lifecycle

import (
	"fmt"
	"io"

	"github.com/rs/zerolog"

	"lb/config"
	"lb/fdlimit"
	"lb/proxy"
)

// FDs is the file descriptor limit, raised to the hard limit, and
// what the configuration needs under it.
type FDs struct {
	limit fdlimit.Limit
	err   error // reading or raising the limit failed
	need  fdlimit.Result
}

// unknownLimit is the limit lb plans for when it cannot read its own:
// Linux's default soft limit.
const unknownLimit = 1024

// PlanFDs raises the soft file descriptor limit to the hard limit
// and works out what cfg needs under it, and the maxconn of the frontends
// that set none.
func PlanFDs(cfg *config.Config) FDs {
	lim, err := fdlimit.Raise()
	n := lim.Int()
	if n <= 0 {
		n = unknownLimit
	}
	return FDs{limit: lim, err: err, need: fdlimit.Compute(cfg.FDPlan(), n)}
}

// Apply gives each frontend of p its maxconn, derived from the limit where
// the configuration sets none, and the budget of descriptors that their
// connections share.
func (d FDs) Apply(p *proxy.Proxy) {
	budget := fdlimit.NewBudget(d.need.Budget)
	for _, f := range p.Frontends {
		for _, fr := range d.need.Frontends {
			if fr.Name == f.Name {
				f.MaxConn, f.Descriptors, f.DescriptorsPerConn = fr.MaxConn, budget, fr.PerConn
			}
		}
	}
}

// Warn writes to w, for lb -c, why the limit could not be read or raised,
// and whether it covers what the configuration needs.
func (d FDs) Warn(w io.Writer) {
	if d.err != nil {
		fmt.Fprintf(w, "lb: warning: %v\n", d.err)
	}
	if s := d.need.Warning(); s != "" {
		fmt.Fprintf(w, "lb: warning: %s\n", s)
	}
}

// logDescriptors says what the file descriptor limit is, what the
// configuration needs and the maxconn each frontend gets, and warns when the
// limit does not cover the need.
func (g *Generation) logDescriptors() {
	d := g.FDs
	if d.err != nil {
		g.Log.Warn().Err(d.err).Int("fd_limit_planned", d.need.Limit).
			Msg("cannot read or raise the file descriptor limit: lb plans for fd_limit_planned descriptors; set the limit where lb " +
				"starts (LimitNOFILE= in the systemd unit, ulimit -n, docker run --ulimit nofile=N:N)")
	}
	fronts := zerolog.Arr()
	for _, f := range d.need.Frontends {
		fronts.Dict(zerolog.Dict().Str("name", f.Name).Int("maxconn", f.MaxConn).Bool("derived", f.Derived).Int("fds_per_conn", f.PerConn))
	}
	g.Log.Info().Uint64("fd_limit", d.limit.Soft).Uint64("fd_hard_limit", d.limit.Hard).Int("fd_need", d.need.Need).
		Int("fd_fixed", d.need.Fixed).Int("fd_budget", d.need.Budget).Array("frontends", fronts).Msg("file descriptors")
	if d.need.Covered() {
		return
	}
	g.Log.Warn().Int("fd_limit", d.need.Limit).Int("fd_need", d.need.Need).Int("fd_budget", d.need.Budget).Str("fix", d.need.Fix()).
		Msg("file descriptor limit too low for maxconn: once its connections hold fd_budget descriptors, lb stops accepting " +
			"and new connections wait in the accept queue; raise the limit to fd_need or more (see fix), or lower maxconn")
}
