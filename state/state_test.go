package state

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	d := New(4, []Server{
		{Backend: "app", Server: "s1", Address: "10.0.0.1:80", ConfigWeight: 1, Checked: true, Up: false, Count: 1, Admin: "ready", Weight: 1},
		{Backend: "app", Server: "s2", Address: "10.0.0.2:80", ConfigWeight: 3, Admin: "drain", Weight: 7},
	})
	var buf bytes.Buffer
	if err := Encode(&buf, d); err != nil {
		t.Fatal(err)
	}
	got, err := Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.Servers, d.Servers) || got.Generation != 4 {
		t.Fatalf("round trip: %+v", got)
	}
	path := filepath.Join(t.TempDir(), "lb.state")
	if err := WriteFile(path, d); err != nil {
		t.Fatal(err)
	}
	fromFile, err := ReadFile(path)
	if err != nil || !reflect.DeepEqual(fromFile.Servers, d.Servers) {
		t.Fatalf("file: %+v, %v", fromFile, err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	s, ok := fromFile.Index().Lookup("app", "s2")
	if !ok || s.Admin != "drain" || s.Weight != 7 {
		t.Fatalf("Lookup = %+v, %v", s, ok)
	}
	if _, ok := fromFile.Index().Lookup("app", "s3"); ok {
		t.Fatal("found a server that is not there")
	}
}

func TestDecodeRefusesOtherVersions(t *testing.T) {
	for _, in := range []string{`{"version":2,"servers":[]}`, `not json`, ``} {
		if _, err := Decode(strings.NewReader(in)); err == nil {
			t.Errorf("Decode(%q) accepted it", in)
		}
	}
	if _, err := ReadFile(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "state file") {
		t.Errorf("missing file: %v", err)
	}
}
