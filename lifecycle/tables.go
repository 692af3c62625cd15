package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"lb/admin"
	"lb/state"
	"lb/table"
)

// Stick tables outlive generations: a new generation that takes over from
// a serving one adds to its own tables what the old one counted, as of
// the moment the old one stopped accepting (the reply to "_release"), so
// that no count is lost or counted twice; without a serving generation,
// what the state file saved. Entries keep their totals, their rates (over
// windows aligned to the clock, so they add up) and their servers; the
// connections still open are the old generation's to count.

// sweepEvery is how often expired entries are removed from the tables.
const sweepEvery = 5 * time.Second

// setUpTables takes the tables of the state file now, when no serving
// generation handed the state over; else they come from it as it stops
// accepting (releaseOld).
func (g *Generation) setUpTables(saved state.Doc) {
	if len(g.Proxy.Tables) == 0 || g.fromLive {
		return
	}
	g.mergeTables(saved.Tables, "state file")
}

// fetchTables takes the serving generation's tables when this one did not
// take its listening sockets over (so that no "_release" hands them).
func (g *Generation) fetchTables() {
	if len(g.Proxy.Tables) == 0 || !g.fromLive || g.oldAdmin == "" {
		return
	}
	tables, err := requestTables(g.oldAdmin)
	if err != nil {
		g.Log.Warn().Err(err).Str("socket", g.oldAdmin).Msg("cannot take the stick tables over from the old generation: they start empty")
		return
	}
	g.mergeTables(tables, "the old generation")
}

// mergeTables adds snapshots into the tables of the same names.
func (g *Generation) mergeTables(snaps []table.Snapshot, source string) {
	now := g.host().Now()
	for _, s := range snaps {
		for _, t := range g.Proxy.Tables {
			if t.Spec().Name == s.Name {
				n := t.Merge(s, now)
				g.Log.Info().Str("table", s.Name).Int("entries", n).Str("source", source).Msg("took over a stick table")
			}
		}
	}
}

// tableSnapshots returns every table's entries.
func (g *Generation) tableSnapshots() []table.Snapshot {
	if g.Proxy == nil || len(g.Proxy.Tables) == 0 {
		return nil
	}
	now := g.host().Now()
	out := make([]table.Snapshot, len(g.Proxy.Tables))
	for i, t := range g.Proxy.Tables {
		out[i] = t.Snapshot(now)
	}
	return out
}

// sweepTables removes expired entries every sweepEvery, until ctx is done.
func (g *Generation) sweepTables(ctx context.Context) {
	if len(g.Proxy.Tables) == 0 {
		return
	}
	every(ctx, sweepEvery, func(now time.Time) bool {
		for _, t := range g.Proxy.Tables {
			t.Sweep(now)
		}
		return true
	})
}

// tableByName returns the table called name, or an error that lists them.
func (g *Generation) tableByName(name string) (*table.Table, error) {
	var names []string
	for _, t := range g.Proxy.Tables {
		if t.Spec().Name == name {
			return t, nil
		}
		names = append(names, t.Spec().Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no table %q: the configuration defines no [[table]]", name)
	}
	return nil, fmt.Errorf("no table %q: the tables are %s", name, strings.Join(names, ", "))
}

// showTable answers "show table" (every table: its size and use) and
// "show table NAME [KEY]" (its entries, or the one of KEY), one line each,
// in the manner of HAProxy's.
func (g *Generation) showTable(w io.Writer, r *admin.Request) error {
	now := g.host().Now()
	if len(r.Args) == 0 {
		for _, t := range g.Proxy.Tables {
			s := t.Spec()
			fmt.Fprintf(w, "# table: %s, size: %d, used: %d, evicted: %d, period: %s, expire: %s\n",
				s.Name, s.Size, t.Len(), t.Evicted(), s.Period, s.Expire)
		}
		return nil
	}
	if len(r.Args) > 2 {
		return errors.New("usage: show table [NAME [KEY]]")
	}
	t, err := g.tableByName(r.Args[0])
	if err != nil {
		return err
	}
	s := t.Spec()
	fmt.Fprintf(w, "# table: %s, size: %d, used: %d\n", s.Name, s.Size, t.Len())
	var b []byte
	t.Each(now, func(rec table.Record) bool {
		if len(r.Args) == 2 && rec.Key != r.Args[1] {
			return true
		}
		b = appendRecord(b[:0], rec, s, now)
		_, err = w.Write(b)
		return err == nil
	})
	return err
}

// appendRecord formats an entry for show table: its key, how long until
// it expires (ms), its server and its figures, rates over the period in
// ms as HAProxy writes them ("http_req_rate(10000)=12").
func appendRecord(b []byte, rec table.Record, s table.Spec, now time.Time) []byte {
	b = append(b, "key="...)
	b = strconv.AppendQuote(b, rec.Key)
	exp := max(s.Expire-now.Sub(rec.SeenTime()), 0)
	b = append(b, " exp="...)
	b = strconv.AppendInt(b, exp.Milliseconds(), 10)
	if rec.Server != "" {
		b = append(b, " server="...)
		b = append(b, rec.Server...)
	}
	for _, f := range table.Figures() {
		b = append(b, ' ')
		b = append(b, f.String()...)
		if strings.HasSuffix(f.String(), "_rate") {
			b = append(b, '(')
			b = strconv.AppendInt(b, s.Period.Milliseconds(), 10)
			b = append(b, ')')
		}
		b = append(b, '=')
		b = strconv.AppendUint(b, rec.Get(f, s.Period, now), 10)
	}
	return append(b, '\n')
}

// clearTable answers "clear table NAME [KEY]": it removes every entry of
// the table, or the one of KEY.
func (g *Generation) clearTable(w io.Writer, r *admin.Request) error {
	if len(r.Args) < 1 || len(r.Args) > 2 {
		return errors.New("usage: clear table NAME [KEY]")
	}
	t, err := g.tableByName(r.Args[0])
	if err != nil {
		return err
	}
	if len(r.Args) == 2 {
		if !t.Clear([]byte(r.Args[1])) {
			return fmt.Errorf("table %q has no key %q", r.Args[0], r.Args[1])
		}
		g.Log.Info().Str("table", r.Args[0]).Str("key", r.Args[1]).Msg("clear table: removed a key")
		_, err = fmt.Fprintf(w, "removed key %q from table %q\n", r.Args[1], r.Args[0])
		return err
	}
	n := t.ClearAll()
	g.Log.Info().Str("table", r.Args[0]).Int("entries", n).Msg("clear table: removed every key")
	_, err = fmt.Fprintf(w, "removed %d entries from table %q\n", n, r.Args[0])
	return err
}
