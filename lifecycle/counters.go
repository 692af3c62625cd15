package lifecycle

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"lb/admin"
	"lb/metrics"
	"lb/stats"
	"lb/table"
)

// The traffic counters across generations: every generation counts its
// own traffic from zero; the ledger holds what the others counted (handed
// over with the state, kept in state_file); a generation that drains
// reports its own counts to the newest one every reportPeriod and when it
// exits. What any generation shows is its own counts plus its ledger's.

// reportPeriod is how often a draining generation reports its counts.
const reportPeriod = time.Second

// finalReportWait bounds how long an exiting generation tries to hand its
// last counts to the newest one.
const finalReportWait = 3 * time.Second

// maxReport bounds a report's size: a few hundred bytes per server.
const maxReport = 64 << 20

// setUpCounters takes the other generations' counts from the previous
// state (live says it came from a serving generation) and makes what the
// stats listener and the admin socket show.
func (g *Generation) setUpCounters(c *stats.Carried, live bool, history map[string]json.RawMessage) {
	if c != nil {
		g.ledger.Restore(*c, g.host().Now())
	}
	g.stats = &metrics.Source{
		Proxy:   g.Proxy,
		Process: metrics.Process{Generation: g.number, Pid: g.self.Pid, Reloaded: live || g.replacing()},
		Health:  g.srv.Health,
		Ledger:  &g.ledger,
		History: &g.history,
		Act:     g.srv.Set,
		Start:   g.start,
	}
	g.history.Step = g.Cfg.Stats.HistoryStep.D()
	if raw, ok := history[liveHistory]; ok {
		if err := g.history.Restore(raw); err != nil {
			g.Log.Warn().Err(err).Msg("cannot take the stats page's history over")
		}
	}
	if s := g.Cfg.Stats; s.Bind != "" {
		access := metrics.Access{Allow: s.AllowPrefixes(), User: s.User, PasswordHash: []byte(s.PasswordHash), Admin: s.Admin}
		g.statsSrv = metrics.NewServer(g.stats, access, g.Log)
	}
}

// liveHistory names the stats page's history in state.Doc.Live.
const liveHistory = "stats_history"

// ownReport is this generation's own counts.
func (g *Generation) ownReport(final bool) stats.Report {
	return stats.Report{Generation: g.number, Pid: g.self.Pid, Values: g.stats.Own(), Connections: g.connections(), Final: final}
}

// carried is the ledger to hand over, this generation's own counts in it;
// final says this generation counts no more.
func (g *Generation) carried(final bool) *stats.Carried {
	if g.stats == nil {
		return nil
	}
	c := g.ledger.Carry(g.ownReport(final))
	return &c
}

// serveStats is the accept loop of the stats listener.
func (g *Generation) serveStats(l *boundListener) {
	defer close(l.done)
	g.statsSrv.Serve(l.ln)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g.statsSrv.Stop(ctx)
}

// startStats starts serving the stats listener, once the generation it
// took the socket from stopped accepting on it: a scrape never sees the
// counters go backwards.
func (g *Generation) startStats(ctx context.Context) {
	if g.statsSrv == nil {
		return
	}
	g.history.Take(g.Proxy, g.host().Now())
	go every(ctx, g.history.Period(), func(now time.Time) bool {
		g.history.Take(g.Proxy, now)
		return true
	})
	for _, l := range g.lns {
		if l.f == nil {
			g.Log.Info().Str("address", l.bind).Msg("stats listener: /metrics, /stats.json")
			go g.serveStats(l)
		}
	}
}

// takeReport answers "_report": a draining generation's counts, a JSON
// stats.Report after the command's line.
func (g *Generation) takeReport(w io.Writer, r *admin.Request) error {
	if g.state.Load() != stateServing || g.released.Load() {
		return errors.New("this generation does not serve: report to the newest one")
	}
	var rep stats.Report
	if err := json.NewDecoder(io.LimitReader(r.Body, maxReport)).Decode(&rep); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if rep.Pid == g.self.Pid || rep.Pid <= 0 {
		return fmt.Errorf("report: pid %d is not another generation's", rep.Pid)
	}
	g.ledger.Merge(rep, g.host().Now())
	_, err := io.WriteString(w, "ok\n")
	return err
}

// sendReport sends this generation's counts to the generation that serves
// the admin socket path now.
func (g *Generation) sendReport(final bool) error {
	path := g.adminSocketPath()
	if path == "" {
		return errors.New("no admin socket")
	}
	rep := g.ownReport(final)
	c, err := admin.Dial(path, queryTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	w := bufio.NewWriter(c)
	_, _ = w.WriteString("_report\n")
	if err := json.NewEncoder(w).Encode(rep); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	reply, err := io.ReadAll(io.LimitReader(c, 4096))
	if err != nil {
		return err
	}
	if string(reply) != "ok\n" {
		return fmt.Errorf("reply %q", reply)
	}
	return nil
}

// replaced reports whether a newer generation serves the admin socket
// path: this generation's counts go there.
func (g *Generation) replaced() bool {
	return g.admin != nil && g.adminSocketPath() != "" && !g.admin.Published() && g.given.Load()
}

// reportWhileDraining reports this generation's counts every reportPeriod
// until ctx is done.
func (g *Generation) reportWhileDraining(ctx context.Context) {
	every(ctx, reportPeriod, func(time.Time) bool {
		if g.replaced() {
			if err := g.sendReport(false); err != nil {
				g.Log.Debug().Err(err).Msg("cannot report the counters to the newest generation yet")
			}
		}
		return true
	})
}

// finalReport hands this exiting generation's last counts to the newest
// one, trying again for up to finalReportWait while it cannot.
func (g *Generation) finalReport() {
	if !g.replaced() {
		return
	}
	deadline := time.Now().Add(finalReportWait)
	for {
		err := g.sendReport(true)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			g.Log.Warn().Err(err).Msg("cannot hand the last counters to the newest generation: what this one counted in its last second is lost to the totals")
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// staleReport is how long a generation in the ledger may go unheard
// before it is taken for ended: it reports every reportPeriod while it
// lives. (Its pid alone cannot tell: after a restart from state_file, in
// a new container, say, the pid may be another process's.)
const staleReport = 10 * reportPeriod

// watchLedger ends, in the ledger, the generations that died without
// their last report, once a second while this generation serves: they
// count no more, and are no longer shown as draining.
func (g *Generation) watchLedger(ctx context.Context) {
	every(ctx, time.Second, func(now time.Time) bool {
		if g.state.Load() != stateServing {
			return false
		}
		for _, r := range g.ledger.Live() {
			if r.Pid != g.self.Pid && (syscall.Kill(r.Pid, 0) == syscall.ESRCH || now.Sub(r.Seen) > staleReport) {
				g.ledger.End(r.ID())
			}
		}
		return true
	})
}

// readReleased reads the reply to "_release": "released", then the
// released generation's ledger as of the moment it stopped accepting, its
// own counts in it (which it shows no more than from then on). It
// replaces what "_getstate" gave: this generation takes no report before
// it publishes its admin socket, and the released one takes none after.
// (Older versions send no ledger.)
func (g *Generation) readReleased(c io.Reader) error {
	br := bufio.NewReader(io.LimitReader(c, maxReport+maxTables))
	line, err := br.ReadString('\n')
	if err != nil && line == "" {
		return err
	}
	if line != "released\n" {
		rest, _ := io.ReadAll(io.LimitReader(br, 512))
		return fmt.Errorf("reply %q", line+string(rest))
	}
	var carried stats.Carried
	dec := json.NewDecoder(br)
	if err := dec.Decode(&carried); err != nil {
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("released, but its counters: %w", err)
	}
	g.ledger.Restore(carried, g.host().Now())
	var tables []table.Snapshot
	if err := dec.Decode(&tables); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // an older version, without tables
		}
		return fmt.Errorf("released, but its stick tables: %w", err)
	}
	g.mergeTables(tables, "the old generation, as it stopped accepting")
	return nil
}
