package tlsconf

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTicketsRotate(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tk := NewTickets([]*tls.Config{{}})
	if src, err := tk.Init(nil, nil, t0); err != nil || src != "new" || len(tk.Keys()) != 1 {
		t.Fatalf("Init with nothing: %q, %v, %d keys; want one new key", src, err, len(tk.Keys()))
	}
	first := tk.Keys()[0]
	if changed, _ := tk.Rotate(t0.Add(TicketRotation - time.Minute)); changed {
		t.Fatal("rotated before TicketRotation")
	}
	if changed, _ := tk.Rotate(t0.Add(TicketRotation)); !changed {
		t.Fatal("did not rotate after TicketRotation")
	}
	keys := tk.Keys()
	if len(keys) != 2 || !bytes.Equal(keys[1].Key, first.Key) || bytes.Equal(keys[0].Key, first.Key) {
		t.Fatalf("after one rotation: %d keys, want a new one first and the old one second", len(keys))
	}
	// A week on, the first key is past TicketLifetime and goes.
	if _, err := tk.Rotate(t0.Add(TicketLifetime + time.Minute)); err != nil {
		t.Fatal(err)
	}
	for _, k := range tk.Keys() {
		if bytes.Equal(k.Key, first.Key) {
			t.Fatal("a key older than TicketLifetime was kept")
		}
	}

	// Handed-over keys are kept, newest first, with a new one when due.
	next := NewTickets(nil)
	handed := []TicketKey{keys[1], keys[0]} // out of order
	if src, err := next.Init(nil, handed, t0.Add(TicketRotation+time.Hour)); err != nil || src != "the old generation" {
		t.Fatalf("Init with handed keys: %q, %v", src, err)
	}
	if got := next.Keys(); len(got) != 2 || !bytes.Equal(got[0].Key, keys[0].Key) {
		t.Fatalf("handed keys not kept newest first: %d keys", len(got))
	}
	if _, err := NewTickets(nil).Init(nil, []TicketKey{{Key: []byte("short"), Created: t0}}, t0); err == nil {
		t.Fatal("a handed key of 5 bytes was taken")
	}

	// Keys from the file win, and are never rotated.
	file := NewTickets(nil)
	if src, _ := file.Init([]TicketKey{{Key: bytes.Repeat([]byte{1}, 32)}}, handed, t0); src != "ticket_keys_file" {
		t.Fatalf("source %q, want ticket_keys_file", src)
	}
	if changed, _ := file.Rotate(t0.Add(30 * TicketRotation)); changed || len(file.Keys()) != 1 {
		t.Fatal("keys from ticket_keys_file were rotated")
	}
}

func TestReadTicketKeysFile(t *testing.T) {
	dir := t.TempDir()
	k32 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))
	k80 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{8}, 80))
	write := func(name, text string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keys, err := ReadTicketKeysFile(write("ok", "# comment\n\n"+k32+"\n"+k80+"\n", 0o600))
	if err != nil || len(keys) != 2 {
		t.Fatalf("good file: %d keys, %v", len(keys), err)
	}
	if bytes.Equal(keys[1].Key, bytes.Repeat([]byte{7}, 32)) == false || len(keys[0].Key) != 32 {
		t.Fatal("keys not newest (last line) first, or the 80-byte key not hashed to 32")
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "ok"), link); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"not base64", write("b64", k32+"\n!!!\n", 0o600), ":2: not base64"},
		{"wrong length", write("len", base64.StdEncoding.EncodeToString([]byte("sixteen bytes ok"))+"\n", 0o600), ":1: a key of 16 bytes: want 32, 48 or 80"},
		{"no key", write("empty", "# nothing\n", 0o600), "holds no key"},
		{"readable by others", write("mode", k32+"\n", 0o644), "has mode 0644: group or others may read or write it"},
		{"symbolic link", link, "is a symbolic link"},
	} {
		if _, err := ReadTicketKeysFile(tc.path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
