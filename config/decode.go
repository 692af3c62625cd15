package config

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The decoder maps the map[string]any that toml.Decode makes of a file onto
// the config structs, strictly: keys must match a toml tag exactly, values
// must have the field's type. Every problem is recorded and mapping goes on,
// so that one run reports them all.

var (
	durationType = reflect.TypeFor[Duration]()
	posType      = reflect.TypeFor[Pos]()
	serverType   = reflect.TypeFor[Server]()
)

// decoder maps the tables of one file.
type decoder struct {
	file string
	idx  *posIndex
	errs *Errors
}

// target is what a table is mapped into: the object named in messages, and
// where the keys it sets and the keys it rejects are recorded.
type target struct {
	label string
	// set records the line of a key (dotted when nested, "timeout.client").
	set func(key string, line int)
	// reject records a key whose value could not be used, so that
	// validation does not report the same mistake again.
	reject func(key string)
}

func (d *decoder) errorf(line int, object, format string, args ...any) {
	*d.errs = append(*d.errs, &Error{
		Pos:    Pos{File: d.file, Line: line},
		Object: object,
		Msg:    fmt.Sprintf(format, args...),
	})
}

// line returns the line of path+more in the file.
func (d *decoder) line(path []string, more ...string) int {
	return d.idx.line(concat(path, more...)...)
}

// keys returns the keys of m, the table at path, in the order of their lines.
func (d *decoder) keys(m map[string]any, path []string) []string {
	lines := make(map[string]int, len(m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
		lines[k] = d.line(path, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		return cmp.Or(cmp.Compare(lines[a], lines[b]), strings.Compare(a, b))
	})
	return keys
}

// object maps the table m at path onto v, a struct with a Pos field, which
// is filled with the file, the table's line and the lines of the keys set.
func (d *decoder) object(m map[string]any, v reflect.Value, path []string, label string) {
	pos := Pos{File: d.file, Line: d.line(path), keys: map[string]int{}}
	t := &target{
		label: label,
		set: func(key string, line int) {
			pos.keys[key] = line
			delete(pos.bad, key)
		},
		reject: func(key string) {
			if pos.bad == nil {
				pos.bad = map[string]bool{}
			}
			pos.bad[key] = true
		},
	}
	d.table(m, v, path, "", t)
	if f := v.FieldByName("Pos"); f.IsValid() && f.Type() == posType {
		f.Set(reflect.ValueOf(pos))
	}
}

// table maps the table m at path onto the struct v. prefix is m's own dotted
// name inside the object ("timeout."), or empty for the object itself.
func (d *decoder) table(m map[string]any, v reflect.Value, path []string, prefix string, t *target) {
	fields := fieldsOf(v.Type())
	for _, k := range d.keys(m, path) {
		line := d.line(path, k)
		i, ok := fields.index[k]
		if !ok {
			in := ""
			if prefix != "" {
				in = " in " + strings.TrimSuffix(prefix, ".")
			}
			d.errorf(line, t.label, "unknown key %q (valid keys%s: %s)", prefix+k, in, strings.Join(fields.names, ", "))
			continue
		}
		t.set(prefix+k, line)
		d.value(m[k], v.Field(i), concat(path, k), prefix+k, t)
	}
}

// value maps x, the value of the key named name at path, onto v.
func (d *decoder) value(x any, v reflect.Value, path []string, name string, t *target) {
	line := d.line(path)
	fail := func(format string, args ...any) {
		d.errorf(line, t.label, "%s: "+format, append([]any{name}, args...)...)
		t.reject(name)
	}
	mistyped := func(hint string) {
		fail("expected %s, found %s%s", expected(v.Type()), describe(x), hint)
	}
	typ := v.Type()
	switch {
	case typ == durationType:
		s, ok := x.(string)
		if !ok {
			mistyped("")
			return
		}
		var dur Duration
		if err := dur.UnmarshalText([]byte(s)); err != nil {
			fail("%v", err)
			return
		}
		v.Set(reflect.ValueOf(dur))
	case typ.Kind() == reflect.String:
		s, ok := x.(string)
		if !ok {
			mistyped("")
			return
		}
		v.SetString(s)
	case typ.Kind() == reflect.Int:
		n, ok := x.(int64)
		if !ok {
			mistyped("")
			return
		}
		if v.OverflowInt(n) {
			fail("%d is too large", n)
			return
		}
		v.SetInt(n)
	case typ.Kind() == reflect.Bool:
		b, ok := x.(bool)
		if !ok {
			mistyped("")
			return
		}
		v.SetBool(b)
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.String:
		decodeList(d, x, v, path, name, t, "a string", mistyped, func(e any) (string, bool) {
			s, ok := e.(string)
			return s, ok
		})
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Int:
		decodeList(d, x, v, path, name, t, "an integer", mistyped, func(e any) (int, bool) {
			n, ok := e.(int64)
			return int(n), ok && n == int64(int(n))
		})
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct:
		elems, ok := tables(x)
		if !ok {
			hint := ""
			if _, isTable := x.(map[string]any); isTable {
				h := headerName(path)
				hint = fmt.Sprintf(": write [[%s]] instead of [%s]", h, h)
			}
			mistyped(hint)
			return
		}
		kind := path[len(path)-1]
		for i, m := range elems {
			e := newElem(typ.Elem())
			label := elemLabel(kind, stringKey(m, "name"), i+1)
			if t.label != "" {
				label = t.label + ": " + label
			}
			d.object(m, e, concat(path, strconv.Itoa(i)), label)
			v.Set(reflect.Append(v, e))
		}
	case typ.Kind() == reflect.Struct:
		m, ok := x.(map[string]any)
		if !ok {
			mistyped("")
			return
		}
		d.table(m, v, path, name+".", t)
	default:
		// A schema type this decoder does not know: a bug, not a user error.
		fail("cannot be decoded into a field of type %s", typ)
	}
}

// decodeList maps x, an array, onto v, a slice of T, with conv: each
// element that conv refuses (it is not what) is reported at its line.
func decodeList[T any](d *decoder, x any, v reflect.Value, path []string, name string, t *target, what string,
	mistyped func(hint string), conv func(any) (T, bool)) {
	arr, ok := x.([]any)
	if !ok {
		mistyped("")
		return
	}
	out := make([]T, 0, len(arr))
	for i, e := range arr {
		el := d.line(path, strconv.Itoa(i))
		t.set(name+"."+strconv.Itoa(i), el)
		c, ok := conv(e)
		if !ok {
			d.errorf(el, t.label, "%s: element %d: expected %s, found %s", name, i+1, what, describe(e))
			t.reject(name)
			continue
		}
		out = append(out, c)
	}
	if len(out) == len(arr) {
		v.Set(reflect.ValueOf(out))
	}
}

// newElem returns a new element of an array of tables, holding the values
// its keys default to.
func newElem(typ reflect.Type) reflect.Value {
	e := reflect.New(typ).Elem()
	if typ == serverType {
		e.Set(reflect.ValueOf(Server{Weight: DefaultWeight}))
	}
	return e
}

// tables returns x as a list of tables when it is an array of tables,
// written as [[...]] tables or as an inline array of inline tables.
func tables(x any) ([]map[string]any, bool) {
	switch x := x.(type) {
	case []map[string]any:
		return x, true
	case []any:
		out := make([]map[string]any, 0, len(x))
		for _, e := range x {
			m, ok := e.(map[string]any)
			if !ok {
				return nil, false
			}
			out = append(out, m)
		}
		return out, true
	}
	return nil, false
}

// stringKey returns m[key] when it is a string.
func stringKey(m map[string]any, key string) string {
	s, _ := m[key].(string)
	return s
}

// elemLabel names an element of an array of tables in messages: by its name
// (`server "s1"`) or, without one, by its 1-based number (`server #2`).
func elemLabel(kind, name string, n int) string {
	if name != "" {
		return fmt.Sprintf("%s %q", kind, name)
	}
	return fmt.Sprintf("%s #%d", kind, n)
}

// headerName returns the dotted table name of path, without array indices:
// "backend.server" for backend/0/server.
func headerName(path []string) string {
	var parts []string
	for _, p := range path {
		if _, err := strconv.Atoi(p); err != nil {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ".")
}

// fields is the toml keys of a struct type, in declaration order.
type fields struct {
	names []string
	index map[string]int // key to field index
}

// fieldsOf lists the fields of a struct type that have a toml key: its tag,
// or the field name when untagged. Fields tagged "-" and unexported ones have
// none.
func fieldsOf(typ reflect.Type) fields {
	fs := fields{index: map[string]int{}}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		fs.names = append(fs.names, name)
		fs.index[name] = i
	}
	return fs
}

// expected describes the TOML value a field takes.
func expected(typ reflect.Type) string {
	switch {
	case typ == durationType:
		return `a duration string like "2s"`
	case typ.Kind() == reflect.String:
		return "a string"
	case typ.Kind() == reflect.Int:
		return "an integer"
	case typ.Kind() == reflect.Bool:
		return "a boolean"
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.String:
		return "an array of strings"
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Int:
		return "an array of integers"
	case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct:
		return "an array of tables"
	case typ.Kind() == reflect.Struct:
		return "a table"
	}
	return typ.String()
}

// describe names the TOML type of a value toml.Decode produced.
func describe(x any) string {
	switch x := x.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		for _, e := range x {
			if _, ok := e.(map[string]any); !ok {
				return "an array of " + plural(describe(e))
			}
		}
		return "an array"
	case nil:
		return "nothing"
	}
	return fmt.Sprintf("a %T", x)
}

// plural turns "a string" into "strings", "an array of tables" into "arrays
// of tables".
func plural(s string) string {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "a "), "an ")
	if before, after, ok := strings.Cut(s, " of "); ok {
		return before + "s of " + after
	}
	return s + "s"
}
