package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// streamFile is what Resolve read of RELAY_CONFIG: the streams as written
// (Validate checks them) and the problems of reading it, each with
// FILE:LINE.
type streamFile struct {
	path     string
	streams  []fileStream
	problems []error
}

// fileStream is one item of the file's streams list, with the line of each
// key so that every problem found later points into the file.
type fileStream struct {
	Stream
	line   int             // the list item
	lines  map[string]int  // "outbox", "columns", "columns/event_type", ...
	failed map[string]bool // keys (as in lines) whose value could not be read
}

// Keys of the file, in the order the error messages list them.
var (
	topKeys    = []string{"streams"}
	streamKeys = []string{"name", "outbox", "columns", "constants", "ignore", "clickhouse_table", "max_tables"}
)

// readStreamFile reads path, expanding ${VAR} in values from environ (never
// from the process environment: one reading of each input).
func readStreamFile(path string, environ map[string]string) *streamFile {
	f := &streamFile{path: path}
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		f.problem(0, "RELAY_CONFIG (--config): no such file")
		return f
	case err != nil:
		f.problems = append(f.problems, fmt.Errorf("RELAY_CONFIG (--config): %w", err))
		return f
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc, more yaml.Node
	err = dec.Decode(&doc)
	if err == nil {
		if err = dec.Decode(&more); err == nil {
			f.problem(more.Line, "a second YAML document: the streams go in one")
			return f
		} else if errors.Is(err, io.EOF) {
			err = nil
		}
	}
	var le *yaml.LoadError
	switch {
	case errors.Is(err, io.EOF) || (err == nil && len(doc.Content) == 0):
		f.problem(0, "the file is empty: want a list of streams under streams:")
	case errors.As(err, &le):
		f.problem(le.Mark.Line, "%s", le.Message)
	case err != nil:
		f.problem(0, "not YAML: %v", err)
	default:
		f.readTop(doc.Content[0], environ)
	}
	return f
}

// problem records a problem at line (0: the file as a whole).
func (f *streamFile) problem(line int, format string, args ...any) {
	where := f.path
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	f.problems = append(f.problems, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
}

func (f *streamFile) readTop(top *yaml.Node, environ map[string]string) {
	top = deref(top)
	if top.Kind != yaml.MappingNode {
		f.problem(top.Line, "want a mapping with the key streams:")
		return
	}
	var list *yaml.Node
	f.eachKey(top, topKeys, func(key string, k, v *yaml.Node) {
		list = v // the only top-level key
	})
	switch {
	case list == nil:
		f.problem(top.Line, "no streams: key missing")
		return
	case list.Kind != yaml.SequenceNode:
		f.problem(list.Line, "streams: want a list of streams")
		return
	case len(list.Content) == 0:
		f.problem(list.Line, "streams: the list is empty")
		return
	}
	for _, item := range list.Content {
		f.readStream(deref(item), environ)
	}
}

// eachKey calls fn for every key of m, refusing unknown and repeated keys.
func (f *streamFile) eachKey(m *yaml.Node, known []string, fn func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], deref(m.Content[i+1])
		switch {
		case !slices.Contains(known, k.Value):
			f.problem(k.Line, "unknown key %q (known: %s)", k.Value, strings.Join(known, ", "))
		case seen[k.Value]:
			f.problem(k.Line, "key %q given twice", k.Value)
		default:
			seen[k.Value] = true
			fn(k.Value, k, v)
		}
	}
}

func (f *streamFile) readStream(item *yaml.Node, environ map[string]string) {
	s := fileStream{line: item.Line, lines: map[string]int{}, failed: map[string]bool{}}
	if item.Kind != yaml.MappingNode {
		f.problem(item.Line, "a stream is a mapping (name:, outbox:, clickhouse_table: ...)")
		return
	}
	f.eachKey(item, streamKeys, func(key string, k, v *yaml.Node) {
		s.lines[key] = k.Line
		switch key {
		case "name":
			s.Name = f.scalar(&s, key, "", v, environ)
		case "outbox":
			s.Outbox = f.scalar(&s, key, "", v, environ)
		case "clickhouse_table":
			s.ClickHouseTable = f.scalar(&s, key, "", v, environ)
		case "max_tables":
			if n, err := strconv.Atoi(f.scalar(&s, key, "", v, environ)); err != nil && !s.failed[key] {
				f.problem(v.Line, "max_tables: want a whole number")
				s.failed[key] = true
			} else {
				s.MaxTables = n
			}
		case "columns":
			s.Columns = f.mapping(&s, key, v, environ)
		case "constants":
			s.Constants = f.mapping(&s, key, v, environ)
		case "ignore":
			s.Ignore = f.list(&s, key, v, environ)
		}
	})
	f.streams = append(f.streams, s)
}

// scalar is v's value with ${VAR} expanded. A mapping or a list, or a bad
// reference, is a problem, and the key (or its entry) is marked failed so
// that no second message follows about the value it lacks.
func (f *streamFile) scalar(s *fileStream, key, entry string, v *yaml.Node, environ map[string]string) string {
	name, id := key, key
	if entry != "" {
		name, id = key+"."+entry, key+"/"+entry
	}
	if v.Kind != yaml.ScalarNode {
		f.problem(v.Line, "%s: want a single value, not a %s", name, kindWord(v))
		s.failed[id] = true
		return ""
	}
	if v.Tag == "!!null" {
		return ""
	}
	val, err := expand(v.Value, environ)
	if err != nil {
		f.problem(v.Line, "%s: %v", name, err)
		s.failed[id] = true
	}
	return val
}

func (f *streamFile) mapping(s *fileStream, key string, v *yaml.Node, environ map[string]string) map[string]string {
	if v.Kind != yaml.MappingNode {
		if v.Tag != "!!null" {
			f.problem(v.Line, "%s: want a mapping (field: value), not a %s", key, kindWord(v))
		}
		return nil
	}
	m := map[string]string{}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i]
		if _, dup := m[k.Value]; dup {
			f.problem(k.Line, "%s: %q given twice", key, k.Value)
			continue
		}
		s.lines[key+"/"+k.Value] = k.Line
		m[k.Value] = f.scalar(s, key, k.Value, deref(v.Content[i+1]), environ)
	}
	return m
}

func (f *streamFile) list(s *fileStream, key string, v *yaml.Node, environ map[string]string) []string {
	if v.Kind != yaml.SequenceNode {
		if v.Tag != "!!null" {
			f.problem(v.Line, "%s: want a list ([a, b]), not a %s", key, kindWord(v))
		}
		return nil
	}
	var out []string
	for _, item := range v.Content {
		val := f.scalar(s, key, "", deref(item), environ)
		if _, seen := s.lines[key+"/"+val]; !seen {
			s.lines[key+"/"+val] = item.Line
		}
		out = append(out, val)
	}
	return out
}

// deref follows a YAML alias (*name) to the node it names.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func kindWord(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	}
	return "value"
}

// expand replaces ${NAME} in s with environ's NAME, and $$ with $; any
// other $ stays. An unset NAME is an error naming it: a stream must not
// silently read a table named "".
func expand(s string, environ map[string]string) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	var unset []string
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '$' || i+1 == len(s):
			b.WriteByte(s[i])
		case s[i+1] == '$':
			b.WriteByte('$')
			i++
		case s[i+1] == '{':
			end := strings.IndexByte(s[i:], '}')
			if end < 0 {
				return "", fmt.Errorf("%q: ${ without a closing }", s)
			}
			name := s[i+2 : i+end]
			if !envName.MatchString(name) {
				return "", fmt.Errorf("%q: ${%s} is not a variable name (write $$ for a literal $)", s, name)
			}
			v, ok := environ[name]
			if !ok {
				unset = append(unset, name)
			}
			b.WriteString(v)
			i += end
		default:
			b.WriteByte('$')
		}
	}
	if len(unset) > 0 {
		sort.Strings(unset)
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(unset, ", "))
	}
	return b.String(), nil
}
