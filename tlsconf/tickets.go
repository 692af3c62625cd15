package tlsconf

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"
)

// Session ticket key rotation when no ticket_keys_file is set, as crypto/tls
// does on its own: a new key every day, each one kept for a week to
// decrypt the tickets it made.
const (
	TicketRotation = 24 * time.Hour
	TicketLifetime = 7 * 24 * time.Hour
)

// ticketKeyLen is the length of a crypto/tls session ticket key.
const ticketKeyLen = 32

// TicketKey is one session ticket key and when it was made.
type TicketKey struct {
	Key     []byte    `json:"key"` // 32 bytes
	Created time.Time `json:"created"`
}

// Tickets holds the session ticket keys that every TLS frontend of a
// generation shares: the newest encrypts new tickets, every one decrypts.
// A generation takes its predecessor's keys over, so that clients resume
// their TLS sessions across reloads instead of making a full handshake.
// Its zero value has no frontends and no keys.
type Tickets struct {
	mu       sync.Mutex
	cfgs     []*tls.Config
	keys     []TicketKey // newest first
	fromFile bool
}

// NewTickets returns the keys holder of the frontends' configurations.
func NewTickets(cfgs []*tls.Config) *Tickets {
	return &Tickets{cfgs: slices.Clone(cfgs)}
}

// Init sets the first keys, and says where they came from: the keys of
// ticket_keys_file when there are any (the file is the operator's and
// wins), else the keys handed over by the previous generation (with a new
// one added when the newest is older than TicketRotation), else a new
// key.
func (t *Tickets) Init(file, handed []TicketKey, now time.Time) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case len(file) > 0:
		t.keys, t.fromFile = slices.Clone(file), true
		return "ticket_keys_file", t.apply()
	case len(handed) > 0:
		for _, k := range handed {
			if len(k.Key) != ticketKeyLen {
				return "", fmt.Errorf("session ticket key handed over: %d bytes, want %d", len(k.Key), ticketKeyLen)
			}
		}
		t.keys = slices.Clone(handed)
		slices.SortStableFunc(t.keys, func(a, b TicketKey) int { return b.Created.Compare(a.Created) })
		if _, err := t.rotate(now); err != nil {
			return "", err
		}
		return "the old generation", t.apply()
	}
	if _, err := t.rotate(now); err != nil {
		return "", err
	}
	return "new", t.apply()
}

// Rotate adds a new key when the newest is older than TicketRotation (or
// there is none) and drops keys older than TicketLifetime. Keys from
// ticket_keys_file are never rotated: the operator rotates the file. It
// reports whether the keys changed.
func (t *Tickets) Rotate(now time.Time) (bool, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fromFile {
		return false, nil
	}
	changed, err := t.rotate(now)
	if err != nil || !changed {
		return false, err
	}
	return true, t.apply()
}

func (t *Tickets) rotate(now time.Time) (bool, error) {
	changed := false
	if len(t.keys) == 0 || now.Sub(t.keys[0].Created) >= TicketRotation {
		k := TicketKey{Key: make([]byte, ticketKeyLen), Created: now}
		if _, err := rand.Read(k.Key); err != nil {
			return false, fmt.Errorf("session ticket key: %w", err)
		}
		t.keys = append([]TicketKey{k}, t.keys...)
		changed = true
	}
	kept := t.keys[:1]
	for _, k := range t.keys[1:] {
		if now.Sub(k.Created) < TicketLifetime {
			kept = append(kept, k)
		}
	}
	changed = changed || len(kept) != len(t.keys)
	t.keys = kept
	return changed, nil
}

// apply gives the keys to every configuration.
func (t *Tickets) apply() error {
	keys := make([][32]byte, len(t.keys))
	for i, k := range t.keys {
		if len(k.Key) != ticketKeyLen {
			return fmt.Errorf("session ticket key %d: %d bytes, want %d", i, len(k.Key), ticketKeyLen)
		}
		keys[i] = [32]byte(k.Key)
	}
	for _, c := range t.cfgs {
		c.SetSessionTicketKeys(keys)
	}
	return nil
}

// Keys returns the keys, newest first, to hand to the next generation.
func (t *Tickets) Keys() []TicketKey {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.keys)
}

// ReadTicketKeysFile reads a session ticket keys file: one key per line,
// base64 (standard encoding), the last line the newest, which encrypts;
// the others only decrypt. Blank lines and lines starting with # are
// skipped. A key of 32 bytes is used as it is; a key of 48 or 80 bytes (as
// HAProxy's tls-ticket-keys files hold, made with `openssl rand 80 |
// base64`) is hashed with SHA-256 into one, so a fleet can share one file.
// The file must be lb's or root's, readable by no one else, and not a
// symbolic link: whoever can read it can decrypt the tickets, and whoever
// can write it can choose them.
func ReadTicketKeysFile(path string) ([]TicketKey, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, fmt.Errorf("%s is a symbolic link, which lb does not follow there: name the file itself", path)
		}
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := checkSecretFile(path, fi); err != nil {
		return nil, err
	}
	var keys []TicketKey
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 || text[0] == '#' {
			continue
		}
		raw, err := base64.StdEncoding.AppendDecode(nil, text)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: not base64: %w", path, line, err)
		}
		switch len(raw) {
		case ticketKeyLen:
		case 48, 80:
			sum := sha256.Sum256(raw)
			raw = sum[:]
		default:
			return nil, fmt.Errorf("%s:%d: a key of %d bytes: want 32, 48 or 80 (make one with: openssl rand 32 | base64)", path, line, len(raw))
		}
		keys = append(keys, TicketKey{Key: raw})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no key: one base64 key per line, the newest last (make one with: openssl rand 32 | base64)", path)
	}
	slices.Reverse(keys) // newest first
	return keys, nil
}

// checkSecretFile refuses a keys file that is not a regular file, belongs
// to another user than lb's or root, or that group or others may read or
// write.
func checkSecretFile(path string, fi fs.FileInfo) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (%v)", path, fi.Mode().Type())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() && st.Uid != 0 {
		return fmt.Errorf("%s belongs to uid %d, while lb runs as uid %d and trusts only its own files and root's: chown %d %s",
			path, st.Uid, os.Geteuid(), os.Geteuid(), path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: group or others may read or write it, and whoever reads it can decrypt every session ticket: chmod 600 %s",
			path, perm, path)
	}
	return nil
}
