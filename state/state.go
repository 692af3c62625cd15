// Package state is what one lb generation knows about its servers and hands
// to the next one: each server's health (and how far through rise or fall
// it is), its admin state and its runtime weight. The old generation sends
// it over its admin socket; a state file, written when a generation stops,
// covers a next generation that cannot reach it.
package state

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// version is the format's version; a document of another is refused.
const version = 1

// Server is what is known of one server.
type Server struct {
	Backend string `json:"backend"`
	Server  string `json:"server"`
	// Address (resolved, "ip:port") and ConfigWeight are what the
	// configuration gave the server when the state was taken: a
	// configuration that changes them wins over the saved state.
	Address      string `json:"address"`
	ConfigWeight int    `json:"config_weight"`
	// Checked says whether the server had health checks; Up and Count are
	// their outcome.
	Checked bool `json:"checked"`
	Up      bool `json:"up"`
	Count   int  `json:"count"`
	// Admin is "ready", "drain" or "maint"; Weight is the runtime weight.
	Admin  string `json:"admin"`
	Weight int    `json:"weight"`
}

// Doc is the state of every server of one generation.
type Doc struct {
	Version    int       `json:"version"`
	Generation int       `json:"generation"`
	Saved      time.Time `json:"saved"`
	Servers    []Server  `json:"servers"`
}

// New returns a document of the current format.
func New(generation int, servers []Server) Doc {
	return Doc{Version: version, Generation: generation, Saved: time.Now().UTC(), Servers: servers}
}

// Encode writes d as JSON.
func Encode(w io.Writer, d Doc) error {
	return json.NewEncoder(w).Encode(d)
}

// Decode reads a document and checks its version.
func Decode(r io.Reader) (Doc, error) {
	var d Doc
	if err := json.NewDecoder(r).Decode(&d); err != nil {
		return Doc{}, fmt.Errorf("server state: %w", err)
	}
	if d.Version != version {
		return Doc{}, fmt.Errorf("server state: version %d, this lb reads version %d", d.Version, version)
	}
	return d, nil
}

// WriteFile writes d to path atomically.
func WriteFile(path string, d Doc) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	defer os.Remove(f.Name())
	if err := Encode(f, d); err != nil {
		f.Close()
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state file %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// ReadFile reads the document at path.
func ReadFile(path string) (Doc, error) {
	f, err := os.Open(path)
	if err != nil {
		return Doc{}, fmt.Errorf("state file: %w", err)
	}
	defer f.Close()
	d, err := Decode(f)
	if err != nil {
		return Doc{}, fmt.Errorf("state file %s: %w", path, err)
	}
	return d, nil
}

// Index finds servers by backend and name.
type Index map[[2]string]Server

// Index returns d's servers by backend and name.
func (d Doc) Index() Index {
	ix := make(Index, len(d.Servers))
	for _, s := range d.Servers {
		ix[[2]string{s.Backend, s.Server}] = s
	}
	return ix
}

// Lookup returns the saved state of a server.
func (ix Index) Lookup(backend, server string) (Server, bool) {
	s, ok := ix[[2]string{backend, server}]
	return s, ok
}
