package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

func fixtureNames(t testing.TB) []string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	names := make([]string, len(paths))
	for i, p := range paths {
		names[i] = filepath.Base(p)
	}
	return names
}

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzParse checks that Parse never panics, and that what it returns is
// consistent: a config that validates, or Errors whose positions are in the
// file.
func FuzzParse(f *testing.F) {
	for _, name := range fixtureNames(f) {
		f.Add(readFixture(f, name))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(Source{Name: "fuzz.toml", Data: data})
		if err == nil {
			if cfg == nil {
				t.Fatal("no config and no error")
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", err)
			}
			return
		}
		if cfg != nil {
			t.Fatal("a config along with an error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error %v (%T), want non-empty Errors", err, err)
		}
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range errs {
			if e.Pos.File != "fuzz.toml" || e.Pos.Line < 0 || e.Pos.Line > lines {
				t.Fatalf("error at %s, outside the %d lines of fuzz.toml: %v", e.Pos, lines, e)
			}
		}
	})
}

// FuzzIndex checks that the position index never panics and, on documents
// toml.Decode accepts, knows every key and array element.
func FuzzIndex(f *testing.F) {
	f.Add(tricky)
	for _, name := range fixtureNames(f) {
		f.Add(string(readFixture(f, name)))
	}
	f.Fuzz(func(t *testing.T, src string) {
		idx := buildIndex(src)
		var m map[string]any
		if _, err := toml.Decode(src, &m); err != nil {
			return
		}
		checkIndexMap(t, idx, m, nil, strings.Count(src, "\n")+1)
	})
}

// checkIndexComplete checks that src is valid TOML and that its index has a
// line for every key and array element toml.Decode finds in it.
func checkIndexComplete(t *testing.T, src string) {
	t.Helper()
	var m map[string]any
	if _, err := toml.Decode(src, &m); err != nil {
		t.Fatalf("not valid TOML: %v", err)
	}
	checkIndexMap(t, buildIndex(src), m, nil, strings.Count(src, "\n")+1)
}

func checkIndexMap(t *testing.T, idx *posIndex, v any, path []string, lines int) {
	t.Helper()
	if len(path) > maxDepth/2 {
		return
	}
	if len(path) > 0 {
		l, ok := idx.lines[pathKey(path)]
		if !ok {
			t.Fatalf("index has no line for %q", path)
		}
		if l < 1 || l > lines {
			t.Fatalf("line %d for %q, outside 1..%d", l, path, lines)
		}
	}
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			checkIndexMap(t, idx, e, concat(path, k), lines)
		}
	case []map[string]any:
		for i, e := range v {
			checkIndexMap(t, idx, e, concat(path, strconv.Itoa(i)), lines)
		}
	case []any:
		for i, e := range v {
			checkIndexMap(t, idx, e, concat(path, strconv.Itoa(i)), lines)
		}
	}
}
