package cqrs

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ordoledger/ordo/eventlog"
)

// Spec bounds.
const (
	// SpecFileBytesMax bounds a projections file.
	SpecFileBytesMax = 1 << 20
	// SpecsMax bounds the projections one file declares.
	SpecsMax = 64
	// ReduceOpsMax bounds the reduce steps of one projection.
	ReduceOpsMax = 32
	// EventTypesMax bounds the event_types filter of one projection.
	EventTypesMax = 64
	// EventTypeBytesMax bounds one event type in a filter.
	EventTypeBytesMax = 128
	// PointerBytesMax bounds a key or field JSON pointer.
	PointerBytesMax = 256
	// OutputNameBytesMax bounds a reduce step's "as".
	OutputNameBytesMax = 64
	// SetElementsMax bounds the values one "set" step keeps per row; one
	// more stops the projection (rows stay small and each update cheap).
	SetElementsMax = 1000
	// specIssuesMax bounds the complaints one file gets.
	specIssuesMax = 20
)

// Spec declares a projection without Go: events are filtered by stream
// prefix and type, keyed by a field of their JSON data, and folded into one
// row per key by reduce steps.
type Spec struct {
	Name    string `json:"name"`
	Version int    `json:"version"`
	// StreamPrefix selects events whose stream starts with it ("" for all).
	StreamPrefix string `json:"stream_prefix,omitempty"`
	// EventTypes selects events of these types (none: every type).
	EventTypes []string `json:"event_types,omitempty"`
	// Key is an RFC 6901 JSON pointer into the event data; its value (a
	// string, number or boolean) is the row key. Events without it are
	// skipped and counted.
	Key    string   `json:"key"`
	Reduce []Reduce `json:"reduce"`
	// Source says where the spec was read ("projections.yaml:3").
	Source string `json:"-"`
}

// Reduce is one step folding an event into a row field.
type Reduce struct {
	// Op is count, sum, min, max (int64 integers), last (any JSON value) or
	// set (the distinct values, sorted by their JSON text).
	Op string `json:"op"`
	// Field is a JSON pointer into the event data (not for count). An event
	// without it leaves this step's output as it was.
	Field string `json:"field,omitempty"`
	// As names the output field of the row.
	As string `json:"as"`
}

// Reduce operations.
const (
	OpCount = "count"
	OpSum   = "sum"
	OpLast  = "last"
	OpMin   = "min"
	OpMax   = "max"
	OpSet   = "set"
)

var (
	knownOps   = map[string]bool{OpCount: true, OpSum: true, OpLast: true, OpMin: true, OpMax: true, OpSet: true}
	outputName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)
	// reservedOutputs are fields every declarative row has already.
	reservedOutputs = map[string]bool{"key": true, "position": true}
	builtinNames    = map[string]bool{StreamsProjection: true, EventTypesProjection: true, BalancesProjection: true}
)

// LoadSpecs reads a projections file: JSON if its name ends in .json, YAML
// (the subset parseYAMLTree describes) if in .yaml or .yml. A missing file
// is an error that wraps fs.ErrNotExist.
func LoadSpecs(path string) ([]Spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("load projections: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, SpecFileBytesMax+1))
	if err != nil {
		return nil, fmt.Errorf("load projections %s: %w", path, err)
	}
	if len(data) > SpecFileBytesMax {
		return nil, fmt.Errorf("load projections %s: larger than %d bytes", path, SpecFileBytesMax)
	}
	return ParseSpecs(filepath.Base(path), data)
}

// ParseSpecs parses a projections file's content; name (its file name)
// picks the format and prefixes every error, with the line it is about.
func ParseSpecs(name string, data []byte) ([]Spec, error) {
	if len(data) > SpecFileBytesMax {
		return nil, fmt.Errorf("%s: larger than %d bytes", name, SpecFileBytesMax)
	}
	var (
		root *node
		err  error
	)
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		root, err = parseJSONTree(data)
	case ".yaml", ".yml":
		root, err = parseYAMLTree(data)
	default:
		return nil, fmt.Errorf("%s: want a .json, .yaml or .yml file", name)
	}
	var le *lineError
	if errors.As(err, &le) {
		return nil, fmt.Errorf("%s:%d: %s", name, le.line, le.msg)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	d := &specDecoder{file: name}
	specs := d.decodeFile(root)
	if len(d.issues) > 0 {
		return nil, errors.New(strings.Join(d.issues, "\n"))
	}
	return specs, nil
}

// specDecoder turns a node tree into Specs, collecting complaints with lines.
type specDecoder struct {
	file   string
	issues []string
}

func (d *specDecoder) complain(line int, format string, args ...any) {
	if len(d.issues) < specIssuesMax {
		d.issues = append(d.issues, fmt.Sprintf("%s:%d: %s", d.file, line, fmt.Sprintf(format, args...)))
	}
}

func (d *specDecoder) decodeFile(root *node) []Spec {
	if root.kind != kindMap {
		d.complain(root.line, `want an object with "projections"`)
		return nil
	}
	for i, k := range root.keys {
		if k != "projections" {
			d.complain(root.items[i].line, "unknown field %q", k)
		}
	}
	list := root.field("projections")
	switch {
	case list == nil:
		d.complain(root.line, `"projections" is missing`)
		return nil
	case list.kind != kindList:
		d.complain(list.line, "projections: want a list, got %v", list.kind)
		return nil
	case len(list.items) > SpecsMax:
		d.complain(list.line, "projections: %d, at most %d", len(list.items), SpecsMax)
		return nil
	}
	specs := make([]Spec, 0, len(list.items))
	names := make(map[string]bool)
	for i, item := range list.items {
		s, lines, ok := d.spec(i, item)
		if !ok {
			continue
		}
		for _, is := range validateSpec(&s) {
			d.complain(lines.find(is.at), "%s", is.msg)
		}
		if names[s.Name] {
			d.complain(lines.find("name"), "name: projection %q declared twice", s.Name)
		}
		names[s.Name] = true
		specs = append(specs, s)
	}
	return specs
}

// fieldLines maps a field path ("reduce[1].op") to its line.
type fieldLines map[string]int

// find returns the line of path, or of the nearest enclosing field.
func (l fieldLines) find(path string) int {
	for {
		if line, ok := l[path]; ok {
			return line
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return l[""]
		}
		path = path[:i]
	}
}

func (d *specDecoder) spec(i int, n *node) (Spec, fieldLines, bool) {
	var s Spec
	lines := fieldLines{"": n.line}
	if n.kind != kindMap {
		d.complain(n.line, "projections[%d]: want an object, got %v", i, n.kind)
		return s, lines, false
	}
	s.Source = fmt.Sprintf("%s:%d", d.file, n.line)
	ok := true
	for j, k := range n.keys {
		v := n.items[j]
		lines[k] = v.line
		var good bool
		switch k {
		case "name":
			s.Name, good = d.str(k, v)
		case "version":
			s.Version, good = d.integer(k, v)
		case "stream_prefix":
			s.StreamPrefix, good = d.str(k, v)
		case "key":
			s.Key, good = d.str(k, v)
		case "event_types":
			s.EventTypes, good = d.strList(k, v)
		case "reduce":
			s.Reduce, good = d.reduce(v, lines)
		default:
			d.complain(v.line, "unknown field %q", k)
		}
		ok = ok && good
	}
	for _, req := range []string{"name", "version", "key", "reduce"} {
		if n.field(req) == nil {
			d.complain(n.line, "projections[%d]: %q is missing", i, req)
			ok = false
		}
	}
	return s, lines, ok
}

func (d *specDecoder) str(path string, v *node) (string, bool) {
	if v.kind != kindString {
		d.complain(v.line, "%s: want a string, got %v", path, v.kind)
		return "", false
	}
	return v.text, true
}

func (d *specDecoder) integer(path string, v *node) (int, bool) {
	if v.kind == kindNumber {
		if n, err := strconv.ParseInt(v.text, 10, 32); err == nil {
			return int(n), true
		}
	}
	d.complain(v.line, "%s: want an integer, got %v %s", path, v.kind, v.text)
	return 0, false
}

func (d *specDecoder) strList(path string, v *node) ([]string, bool) {
	if v.kind != kindList {
		d.complain(v.line, "%s: want a list of strings, got %v", path, v.kind)
		return nil, false
	}
	out := make([]string, 0, len(v.items))
	ok := true
	for i, it := range v.items {
		s, good := d.str(fmt.Sprintf("%s[%d]", path, i), it)
		out = append(out, s)
		ok = ok && good
	}
	return out, ok
}

func (d *specDecoder) reduce(v *node, lines fieldLines) ([]Reduce, bool) {
	if v.kind != kindList {
		d.complain(v.line, "reduce: want a list, got %v", v.kind)
		return nil, false
	}
	out := make([]Reduce, 0, len(v.items))
	ok := true
	for i, it := range v.items {
		path := fmt.Sprintf("reduce[%d]", i)
		lines[path] = it.line
		if it.kind != kindMap {
			d.complain(it.line, "%s: want an object, got %v", path, it.kind)
			ok = false
			continue
		}
		var r Reduce
		for j, k := range it.keys {
			f := it.items[j]
			fp := path + "." + k
			lines[fp] = f.line
			var good bool
			switch k {
			case "op":
				r.Op, good = d.str(fp, f)
			case "field":
				r.Field, good = d.str(fp, f)
			case "as":
				r.As, good = d.str(fp, f)
			default:
				d.complain(f.line, "%s: unknown field %q", path, k)
			}
			ok = ok && good
		}
		out = append(out, r)
	}
	return out, ok
}

// specIssue is one thing wrong with a Spec: at names the field (for its
// line in a file), msg says what.
type specIssue struct {
	at, msg string
}

// validateSpec checks a Spec's meaning, whether it came from a file or Go.
func validateSpec(s *Spec) []specIssue {
	var out []specIssue
	add := func(at, format string, args ...any) {
		out = append(out, specIssue{at: at, msg: fmt.Sprintf(format, args...)})
	}
	if err := checkProjectionName(s.Name); err != nil {
		add("name", "name: %v", err)
	} else if builtinNames[s.Name] {
		add("name", "name: %q is a built-in projection", s.Name)
	}
	if s.Version < 1 {
		add("version", "version: %d, want 1 or more", s.Version)
	}
	if len(s.StreamPrefix) > eventlog.StreamNameBytesMax {
		add("stream_prefix", "stream_prefix: %d bytes, at most %d", len(s.StreamPrefix), eventlog.StreamNameBytesMax)
	}
	if len(s.EventTypes) > EventTypesMax {
		add("event_types", "event_types: %d, at most %d", len(s.EventTypes), EventTypesMax)
	}
	seenTypes := make(map[string]bool)
	for i, t := range s.EventTypes {
		at := fmt.Sprintf("event_types[%d]", i)
		switch {
		case t == "" || len(t) > EventTypeBytesMax:
			add(at, "%s: %d bytes, want 1..%d", at, len(t), EventTypeBytesMax)
		case seenTypes[t]:
			add(at, "%s: %q listed twice", at, t)
		}
		seenTypes[t] = true
	}
	if s.Key == "" {
		add("key", `key: want a JSON pointer such as "/customer"`)
	} else if _, err := parsePointer(s.Key); err != nil {
		add("key", "key: %v", err)
	}
	if len(s.Reduce) == 0 || len(s.Reduce) > ReduceOpsMax {
		add("reduce", "reduce: %d steps, want 1..%d", len(s.Reduce), ReduceOpsMax)
	}
	outputs := make(map[string]bool)
	for i, r := range s.Reduce {
		at := fmt.Sprintf("reduce[%d]", i)
		switch {
		case !knownOps[r.Op]:
			add(at+".op", "%s: op %q unknown", at, r.Op)
		case r.Op == OpCount && r.Field != "":
			add(at+".field", "%s: count takes no field", at)
		case r.Op != OpCount && r.Field == "":
			add(at, "%s: op %q needs a field", at, r.Op)
		case r.Op != OpCount:
			if _, err := parsePointer(r.Field); err != nil {
				add(at+".field", "%s: field: %v", at, err)
			}
		}
		switch {
		case len(r.As) > OutputNameBytesMax || !outputName.MatchString(r.As):
			add(at+".as", "%s: as %q: want 1..%d bytes of [A-Za-z0-9_.-], starting with a letter or _", at, r.As, OutputNameBytesMax)
		case reservedOutputs[r.As]:
			add(at+".as", "%s: as %q is reserved", at, r.As)
		case outputs[r.As]:
			add(at+".as", "%s: as %q used twice", at, r.As)
		}
		outputs[r.As] = true
	}
	return out
}
