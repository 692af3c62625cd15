package lifecycle

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"lb/admin"
	"lb/listener"
	"lb/state"
	"lb/stats"
	"lb/table"
)

// takeOver receives the serving generation's listening sockets over the
// admin socket where it handed its state over (-x, or the configuration's
// admin socket). When it cannot, it says why and lb binds anew.
func (g *Generation) takeOver() map[string]*net.TCPListener {
	if g.oldAdmin == "" {
		return nil
	}
	named, err := fetchListeners(g.oldAdmin)
	if err != nil {
		g.warnLauncher(fmt.Sprintf("cannot take the listening sockets over from the old generation (admin socket %s): %v: binding new ones",
			g.oldAdmin, err))
		return nil
	}
	taken := make(map[string]*net.TCPListener, len(named))
	for _, n := range named {
		taken[n.Bind] = n.Listener
	}
	g.tookOver = true
	g.Log.Info().Int("listeners", len(named)).Str("socket", g.oldAdmin).Msg("took the listening sockets over from the old generation")
	return taken
}

// ask sends cmd to the admin socket at path, and returns the connection
// to read the answer from, which the whole exchange must finish within
// timeout.
func ask(path, cmd string, timeout time.Duration) (*net.UnixConn, error) {
	c, err := admin.Dial(path, timeout)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, cmd+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// handoverTimeout bounds the queries that carry the stick tables: a
// table of a million keys is about 80 MB of JSON.
const handoverTimeout = 30 * time.Second

// maxTables bounds the stick tables a query carries.
const maxTables = 512 << 20

func fetchListeners(path string) ([]listener.Named, error) {
	c, err := ask(path, "_getsocks", queryTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return listener.Receive(c)
}

// giveListeners answers "_getsocks": it hands this generation's listening
// sockets to a new generation (lb -x).
func (g *Generation) giveListeners(_ io.Writer, r *admin.Request) error {
	if g.state.Load() != stateServing {
		return errors.New("this generation is draining: its listeners are closing")
	}
	named := make([]listener.Named, len(g.lns))
	for i, l := range g.lns {
		named[i] = listener.Named{Bind: l.bind, Listener: l.ln}
	}
	// Set first: the newer generation may ask for "_release" on another
	// connection as soon as it has the sockets.
	g.given.Store(true)
	if err := listener.Send(r.Conn, named); err != nil {
		return err
	}
	g.Log.Info().Int("listeners", len(named)).Msg("handed the listening sockets to a new generation")
	return nil
}

// releaseOld tells the generation whose listening sockets this one took
// over to stop accepting on them: from here on this generation alone
// accepts. It comes after everything that can fail, since the old
// generation no longer serves new connections afterwards.
func (g *Generation) releaseOld() {
	if !g.tookOver {
		g.fetchTables()
		return
	}
	timeout := queryTimeout
	if len(g.Proxy.Tables) > 0 {
		timeout = handoverTimeout
	}
	c, err := ask(g.oldAdmin, "_release", timeout)
	if err == nil {
		defer c.Close()
		err = g.readReleased(c)
	}
	if err != nil {
		g.Log.Warn().Err(err).Str("socket", g.oldAdmin).
			Msg("cannot tell the old generation to stop accepting: it does so on the soft stop signal instead")
		g.fetchTables()
	}
}

// release answers "_release": a newer generation that took this one's
// listening sockets over serves, so this one stops accepting on its
// copies of them at once. Closing a copy loses nothing: the socket and its
// queue live on in the newer process.
func (g *Generation) release(w io.Writer, _ *admin.Request) error {
	if !g.given.Load() {
		return errors.New("this generation did not hand its listening sockets over: it keeps accepting")
	}
	g.closeGiven()
	// From here on the draining generations report to the newer one,
	// which starts from this one's ledger as of now, and its counts:
	// those this one shows as its own from now on.
	g.released.Store(true)
	own := stats.Report{Generation: g.number, Pid: g.self.Pid, Values: g.stats.Freeze(), Connections: g.connections()}
	if _, err := io.WriteString(w, "released\n"); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(g.ledger.Carry(own)); err != nil {
		return err
	}
	// The stick tables as of now: the newer generation adds them to its
	// own, counted since it started.
	return enc.Encode(g.tableSnapshots())
}

// closeGiven closes this generation's copies of the listening sockets it
// handed over, once.
func (g *Generation) closeGiven() {
	g.releaseOnce.Do(func() {
		for _, l := range g.lns {
			_ = l.ln.Close()
		}
		g.Log.Info().Msg("stopped accepting: the new generation accepts on the listening sockets it took over")
	})
}

func fetchState(path string) (state.Doc, error) {
	// Without the stick tables: they come at "_release", newer, or from
	// "_gettables" when there is no release (see fetchTables).
	c, err := ask(path, "_getstate notables", queryTimeout)
	if err != nil {
		return state.Doc{}, err
	}
	defer c.Close()
	return state.Decode(c)
}

// getState answers "_getstate": the server state, for lb -sf/-st; with
// the argument "notables", without the stick tables.
func (g *Generation) getState(w io.Writer, r *admin.Request) error {
	d := g.snapshot()
	if len(r.Args) == 1 && r.Args[0] == "notables" {
		d.Tables = nil
	}
	return state.Encode(w, d)
}

// requestTables asks the generation at path for its stick tables
// ("_gettables").
func requestTables(path string) ([]table.Snapshot, error) {
	c, err := ask(path, "_gettables", handoverTimeout)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	var tables []table.Snapshot
	err = json.NewDecoder(io.LimitReader(c, maxTables)).Decode(&tables)
	return tables, err
}

// getTables answers "_gettables": the stick tables, for a new generation
// that did not take this one's listening sockets over.
func (g *Generation) getTables(w io.Writer, _ *admin.Request) error {
	return json.NewEncoder(w).Encode(g.tableSnapshots())
}
