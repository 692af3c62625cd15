package lifecycle

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"lb/state"
	"lb/stats"
	"lb/table"
)

// previousState fetches what the previous generation knew: over the
// serving generation's admin socket when this generation replaces one,
// else from the state file. It says where the state came from, and sets
// the generation number: one more than the newest number any source
// gives, so that numbers only increase.
func (g *Generation) previousState() (state.Doc, string) {
	live, liveOK := g.fetchLive()
	file, fileOK := g.readStateFile()
	g.number = max(live.Generation, file.Generation) + 1
	if n, err := strconv.Atoi(g.host().Getenv(envGeneration)); err == nil && n > g.number {
		g.number = n // the predecessor that started this one on SIGHUP
	}
	os.Unsetenv(envGeneration)
	g.fromLive = liveOK
	switch {
	case liveOK:
		return live, "the old generation"
	case fileOK:
		return file, "state file " + g.Cfg.Global.StateFile
	}
	return state.Doc{}, "none: checking every server once"
}

// readStateFile reads state_file, if there is one and lb trusts it.
func (g *Generation) readStateFile() (state.Doc, bool) {
	path := g.Cfg.Global.StateFile
	if path == "" {
		return state.Doc{}, false
	}
	d, err := state.ReadFile(path)
	switch {
	case err == nil:
		return d, true
	case errors.Is(err, state.ErrUntrusted):
		// Whoever could write it could put every server in maint.
		g.Log.Warn().Err(err).Str("state_file", path).
			Msg("not using the state file: lb does not trust it (the error says why and what to fix); not taking its server state or generation number")
	default:
		g.Log.Info().Err(err).Msg("no server state from the state file")
	}
	return state.Doc{}, false
}

// snapshot is what this generation hands to the next one.
func (g *Generation) snapshot() state.Doc {
	d := state.New(g.number, g.srv.Snapshot())
	d.Pid, d.Live = g.self.Pid, g.liveParts()
	d.Counters = g.carried(g.exiting.Load())
	d.Tables = g.tableSnapshots()
	return d
}

// savePeriod is how often a serving generation looks for changes of its
// server state to write to state_file: changes within it are coalesced.
const savePeriod = time.Second

// countersSave is how often the counters alone are written to state_file,
// while they change: a restart loses at most what was counted since.
const countersSave = 10 * time.Second

// saver writes state_file when the server state changes, and never over a
// newer generation's file.
type saver struct {
	mu       sync.Mutex
	servers  []byte    // the servers as last written
	counters []byte    // the counters as last written
	at       time.Time // when the file was last written
	written  fileID    // the file as last written
	stop     context.CancelFunc
	done     chan struct{}
}

// fileID tells whether a file was changed since it was last looked at.
type fileID struct {
	dev, ino uint64
	size     int64
	mtime    time.Time
}

func statID(path string) fileID {
	fi, err := os.Stat(path)
	if err != nil {
		return fileID{}
	}
	id := fileID{size: fi.Size(), mtime: fi.ModTime()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.dev, id.ino = st.Dev, st.Ino
	}
	return id
}

// startSaving writes state_file now, with this generation's number, then
// again whenever the server state changes, until softStop or exit.
func (g *Generation) startSaving(ctx context.Context) {
	if g.Cfg.Global.StateFile == "" {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	g.saver = &saver{stop: cancel, done: make(chan struct{})}
	g.saveState(false)
	go g.saveLoop(ctx)
}

// saveLoop is the saver's goroutine.
func (g *Generation) saveLoop(ctx context.Context) {
	defer close(g.saver.done)
	every(ctx, savePeriod, func(time.Time) bool {
		g.saveState(false)
		return true
	})
}

// stopSaving stops the saver and writes the state one last time.
func (g *Generation) stopSaving() {
	if g.saver == nil {
		return
	}
	g.saver.stop()
	<-g.saver.done
	g.saveState(true)
}

// saveState writes the state file if the server state changed since the
// last write, or the file did, unless a newer generation wrote it: the
// newest generation's state wins. last says this is the generation's last
// write, which is logged.
func (g *Generation) saveState(last bool) {
	path := g.Cfg.Global.StateFile
	if path == "" || g.srv == nil || g.saver == nil {
		return
	}
	sv := g.saver
	sv.mu.Lock()
	defer sv.mu.Unlock()
	servers := g.srv.Snapshot()
	serversJSON, err := json.Marshal(servers)
	if err != nil {
		g.Log.Error().Err(err).Msg("cannot save the server state")
		return
	}
	id := statID(path)
	same := bytes.Equal(serversJSON, sv.servers) && id == sv.written
	// The counters change with every request: they are read and written
	// every countersSave at most, and last of all.
	if same && !last && time.Since(sv.at) < countersSave {
		return
	}
	// What only a live generation hands over (state.Doc.Live) never goes
	// to the file.
	doc := state.New(g.number, servers)
	doc.Pid, doc.Counters = g.self.Pid, g.carried(g.exiting.Load())
	doc.Tables = g.tableSnapshots()
	counters, _ := json.Marshal(struct {
		C *stats.Carried
		T []table.Snapshot
	}{doc.Counters, doc.Tables})
	if same && bytes.Equal(counters, sv.counters) {
		return
	}
	if id != sv.written && id != (fileID{}) {
		if d, err := state.ReadFile(path); err == nil && d.Generation > g.number {
			g.Log.Debug().Int("file_generation", d.Generation).Msg("not saving the server state: a newer generation wrote the state file")
			sv.written = id
			return
		}
	}
	if err := state.WriteFile(path, doc); err != nil {
		g.Log.Error().Err(err).Msg("cannot save the server state")
		return
	}
	sv.servers, sv.counters, sv.written, sv.at = serversJSON, counters, statID(path), time.Now()
	ev := g.Log.Debug()
	if last {
		ev = g.Log.Info()
	}
	ev.Str("state_file", path).Msg("saved the server state")
}
