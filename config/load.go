package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// Source is the contents of one configuration file.
type Source struct {
	// Name is the file's name as messages give it, like "lb.toml".
	Name string
	Data []byte
}

// Load reads the named TOML files and returns their merged, validated
// configuration; see Parse. A file that cannot be read is an error wrapping
// the os error; any other problem is reported as Errors.
func Load(files ...string) (*Config, error) {
	if len(files) == 0 {
		return nil, errors.New("no configuration file given: name at least one TOML file")
	}
	srcs := make([]Source, 0, len(files))
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("error reading configuration: %w", err)
		}
		srcs = append(srcs, Source{Name: name, Data: data})
	}
	return Parse(srcs...)
}

// Parse decodes, merges and validates configuration files, given in order.
//
// It starts from Default. The [global] and [defaults] tables of each file,
// in order, override the keys they set. Then the [[frontend]] and
// [[backend]] tables of every file are appended in order; a key they do not
// set takes its value from the merged defaults, and a server's weight
// defaults to DefaultWeight.
//
// On any problem, a syntax error, an unknown key, a value of the wrong type
// or an invalid setting, Parse returns nil and Errors listing every problem
// found, each with its file and line.
func Parse(srcs ...Source) (*Config, error) {
	cfg := Default()
	o := &origin{keys: map[string]Pos{}, bad: map[string]bool{}}
	cfg.origin = o

	var errs Errors
	docs := make([]parsedFile, 0, len(srcs))
	for _, src := range srcs {
		o.files = append(o.files, src.Name)
		text := string(src.Data)
		var m map[string]any
		if _, err := toml.Decode(text, &m); err != nil {
			errs = append(errs, syntaxError(src.Name, text, err))
			continue
		}
		docs = append(docs, parsedFile{
			m: m,
			d: &decoder{file: src.Name, idx: buildIndex(text), errs: &errs},
		})
	}
	if len(errs) > 0 {
		// A file that does not parse would only give misleading errors
		// further on.
		return nil, errs.orNil(o.files)
	}

	// Pass 1: the settings that frontends and backends inherit.
	for _, doc := range docs {
		for _, k := range doc.d.keys(doc.m, nil) {
			switch k {
			case "global":
				doc.d.section(doc.m[k], k, reflect.ValueOf(&cfg.Global).Elem(), o)
			case "defaults":
				doc.d.section(doc.m[k], k, reflect.ValueOf(&cfg.Defaults).Elem(), o)
			case "stats":
				doc.d.section(doc.m[k], k, reflect.ValueOf(&cfg.Stats).Elem(), o)
			case "frontend", "backend", "acl", "table":
				// Pass 2.
			default:
				doc.d.errorf(doc.d.line(nil, k), "", "unknown key %q (valid keys: global, defaults, frontend, backend, stats, acl, table)", k)
			}
		}
	}

	// Pass 2: frontends and backends, on top of the merged defaults.
	def := cfg.Defaults
	for _, doc := range docs {
		for _, k := range doc.d.keys(doc.m, nil) {
			switch k {
			case "frontend":
				for i, m := range doc.d.array(doc.m[k], k, o) {
					f := Frontend{
						Mode:      def.Mode,
						MaxConn:   def.MaxConn,
						LogFormat: LogFormatJSON,
						LogQuery:  true,
						Timeout: FrontendTimeouts{
							Client:        def.Timeout.Client,
							HTTPRequest:   def.Timeout.HTTPRequest,
							HTTPKeepAlive: def.Timeout.HTTPKeepAlive,
						},
						HTTP: def.HTTP,
					}
					label := elemLabel(k, stringKey(m, "name"), len(cfg.Frontends)+1)
					doc.d.object(m, reflect.ValueOf(&f).Elem(), []string{k, strconv.Itoa(i)}, label)
					cfg.Frontends = append(cfg.Frontends, f)
				}
			case "backend":
				for i, m := range doc.d.array(doc.m[k], k, o) {
					b := Backend{
						Mode:    def.Mode,
						HashKey: HashURI,
						Retries: def.Retries,
						Balance: def.Balance,
						Timeout: BackendTimeouts{
							Connect: def.Timeout.Connect,
							Server:  def.Timeout.Server,
							Tunnel:  def.Timeout.Tunnel,
							Queue:   def.Timeout.Queue,
						},
						SlowStart: def.SlowStart,
						Check:     def.Check,
					}
					label := elemLabel(k, stringKey(m, "name"), len(cfg.Backends)+1)
					doc.d.object(m, reflect.ValueOf(&b).Elem(), []string{k, strconv.Itoa(i)}, label)
					inheritCheck(&b)
					cfg.Backends = append(cfg.Backends, b)
				}
			case "acl":
				cfg.ACLs = appendElems(doc, k, o, cfg.ACLs)
			case "table":
				cfg.Tables = appendElems(doc, k, o, cfg.Tables)
			}
		}
	}

	errs = append(errs, cfg.validate()...)
	if len(errs) > 0 {
		return nil, errs.orNil(o.files)
	}
	cfg.validated = true
	return &cfg, nil
}

// appendElems decodes the array of tables k of doc, whose elements have no
// defaults, onto list.
func appendElems[T any](doc parsedFile, k string, o *origin, list []T) []T {
	for i, m := range doc.d.array(doc.m[k], k, o) {
		var e T
		label := elemLabel(k, stringKey(m, "name"), len(list)+1)
		doc.d.object(m, reflect.ValueOf(&e).Elem(), []string{k, strconv.Itoa(i)}, label)
		list = append(list, e)
	}
	return list
}

// parsedFile is one file that toml.Decode accepted.
type parsedFile struct {
	m map[string]any
	d *decoder
}

// syntaxError turns an error of toml.Decode on text into an *Error at its
// line.
func syntaxError(file, text string, err error) *Error {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return &Error{Pos: Pos{File: file}, Msg: err.Error()}
	}
	line := pe.Position.Line
	// When the error is at a newline, toml counts it on the next line,
	// and an unexpected end of file is on the last line that has
	// something; the byte offset gives the line the mistake is on.
	// toml.Decode drops a byte order mark before counting offsets.
	text = stripBOM(text)
	if start := pe.Position.Start; start >= 0 && start <= len(text) {
		if l := 1 + strings.Count(text[:start], "\n"); line <= 0 || l < line {
			line = l
		}
	}
	return &Error{Pos: Pos{File: file, Line: line}, Msg: pe.Message}
}

// section maps the [global] or [defaults] table x onto v, recording in o
// where each key was set.
func (d *decoder) section(x any, name string, v reflect.Value, o *origin) {
	m, ok := x.(map[string]any)
	if !ok {
		d.errorf(d.line(nil, name), "", "%s must be a table, found %s: write [%s]", name, describe(x), name)
		return
	}
	t := &target{
		label: name,
		set: func(key string, line int) {
			o.keys[name+"."+key] = Pos{File: d.file, Line: line}
			delete(o.bad, name+"."+key)
		},
		reject: func(key string) { o.bad[name+"."+key] = true },
	}
	d.table(m, v, []string{name}, "", t)
}

// array returns the top-level frontend or backend value x as its tables, or
// reports why it is not an array of tables.
func (d *decoder) array(x any, name string, o *origin) []map[string]any {
	elems, ok := tables(x)
	if ok {
		return elems
	}
	o.bad[name] = true
	hint := ""
	if _, isTable := x.(map[string]any); isTable {
		hint = fmt.Sprintf(" instead of [%s]", name)
	}
	d.errorf(d.line(nil, name), "", "%s must be an array of tables, found %s: write [[%s]]%s", name, describe(x), name, hint)
	return nil
}

// origin records where Parse found the settings that have no Pos of their
// own: the files, in order, and the [global] and [defaults] keys.
type origin struct {
	files []string
	// keys holds the position of each global and defaults key set, by
	// dotted name: "global.log_level", "defaults.timeout.connect".
	keys map[string]Pos
	// bad holds the keys whose value was rejected while decoding, and
	// "frontend" or "backend" when they were not arrays of tables, so that
	// validation does not report the same mistake again.
	bad map[string]bool
}

// pos returns where the dotted key was set; the first file when it was not
// set, and nothing for a Config that Parse did not make.
func (o *origin) pos(key string) Pos {
	if o == nil {
		return Pos{}
	}
	if p, ok := o.keys[key]; ok {
		return p
	}
	return o.first()
}

// first returns the position of the first file, for a problem with the
// configuration as a whole.
func (o *origin) first() Pos {
	if o == nil || len(o.files) == 0 {
		return Pos{}
	}
	return Pos{File: o.files[0]}
}

// rejected reports whether the dotted key, or a table holding it, had a
// value that decoding rejected.
func (o *origin) rejected(key string) bool {
	return o != nil && rejected(o.bad, key)
}

// fileList returns the files Parse read, in order.
func (o *origin) fileList() []string {
	if o == nil {
		return nil
	}
	return o.files
}

// inheritCheck gives each server of b the backend's value of every check
// key the server does not set itself.
func inheritCheck(b *Backend) {
	from := reflect.ValueOf(&b.Check).Elem()
	fields := fieldsOf(from.Type())
	for i := range b.Servers {
		s := &b.Servers[i]
		to := reflect.ValueOf(&s.Check).Elem()
		for _, name := range fields.names {
			if _, set := s.Pos.keys["check."+name]; !set {
				j := fields.index[name]
				to.Field(j).Set(from.Field(j))
			}
		}
	}
}
