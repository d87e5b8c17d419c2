package cqrs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/ordoledger/ordo/eventlog"
)

// pointer is a parsed RFC 6901 JSON pointer: its reference tokens.
type pointer []string

func parsePointer(s string) (pointer, error) {
	if len(s) > PointerBytesMax {
		return nil, fmt.Errorf("JSON pointer of %d bytes, at most %d", len(s), PointerBytesMax)
	}
	if s == "" {
		return pointer{}, nil
	}
	if s[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %q must start with /", s)
	}
	parts := strings.Split(s[1:], "/")
	for i, p := range parts {
		var b strings.Builder
		for j := 0; j < len(p); j++ {
			if p[j] != '~' {
				b.WriteByte(p[j])
				continue
			}
			if j+1 == len(p) || (p[j+1] != '0' && p[j+1] != '1') {
				return nil, fmt.Errorf("JSON pointer %q: ~ must be followed by 0 or 1", s)
			}
			b.WriteByte("~/"[p[j+1]-'0'])
			j++
		}
		parts[i] = b.String()
	}
	return parts, nil
}

// resolve finds the value the pointer names in a document decoded with
// UseNumber.
func (p pointer) resolve(doc any) (any, bool) {
	cur := doc
	for _, tok := range p {
		switch v := cur.(type) {
		case map[string]any:
			next, ok := v[tok]
			if !ok {
				return nil, false
			}
			cur = next
		case []any:
			i, ok := arrayIndex(tok)
			if !ok || i >= len(v) {
				return nil, false
			}
			cur = v[i]
		default:
			return nil, false
		}
	}
	return cur, true
}

// arrayIndex parses an RFC 6901 array index: 0, or digits without a
// leading zero.
func arrayIndex(tok string) (int, bool) {
	if tok == "" || (len(tok) > 1 && tok[0] == '0') {
		return 0, false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < '0' || tok[i] > '9' {
			return 0, false
		}
	}
	i, err := strconv.Atoi(tok)
	return i, err == nil
}

// reduceStep is a validated Reduce.
type reduceStep struct {
	op    string
	field pointer
	as    string
}

// specProjection runs a Spec.
type specProjection struct {
	spec  Spec
	key   pointer
	steps []reduceStep
	types map[string]bool
}

// compileSpec validates a Spec and builds its projection.
func compileSpec(s Spec) (*specProjection, error) {
	if issues := validateSpec(&s); len(issues) > 0 {
		msgs := make([]string, len(issues))
		for i, is := range issues {
			msgs[i] = is.msg
		}
		where := s.Source
		if where == "" {
			where = fmt.Sprintf("projection spec %q", s.Name)
		}
		return nil, fmt.Errorf("%s: %s", where, strings.Join(msgs, "; "))
	}
	p := &specProjection{spec: s}
	p.key, _ = parsePointer(s.Key)
	for _, r := range s.Reduce {
		var field pointer
		if r.Op != OpCount {
			field, _ = parsePointer(r.Field)
		}
		p.steps = append(p.steps, reduceStep{op: r.Op, field: field, as: r.As})
	}
	if len(s.EventTypes) > 0 {
		p.types = make(map[string]bool, len(s.EventTypes))
		for _, t := range s.EventTypes {
			p.types[t] = true
		}
	}
	return p, nil
}

func (p *specProjection) Name() string { return p.spec.Name }
func (p *specProjection) Version() int { return p.spec.Version }

func (p *specProjection) Wants(ev *eventlog.Event) bool {
	return strings.HasPrefix(ev.Stream, p.spec.StreamPrefix) && (p.types == nil || p.types[ev.Type])
}

// decodeJSON decodes one JSON value, numbers kept as written.
func decodeJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

// keyText renders a key value as a row key; false if it cannot be one.
func keyText(v any) (string, bool) {
	var s string
	switch k := v.(type) {
	case string:
		s = k
	case json.Number:
		s = k.String()
	case bool:
		s = strconv.FormatBool(k)
	default:
		return "", false
	}
	return s, s != "" && len(s) <= RowKeyBytesMax && utf8.ValidString(s)
}

func (p *specProjection) Apply(t Tx, ev *eventlog.Event) error {
	if ev.ContentType != contentJSON {
		return fmt.Errorf("%w: data is not JSON", ErrSkip)
	}
	doc, err := decodeJSON(ev.Data)
	if err != nil {
		return fmt.Errorf("%w: data: %v", ErrSkip, err)
	}
	kv, found := p.key.resolve(doc)
	if !found {
		return fmt.Errorf("%w: no key field", ErrSkip)
	}
	key, ok := keyText(kv)
	if !ok {
		return fmt.Errorf("%w: key field is not a usable key", ErrSkip)
	}
	stored, found, err := t.Get(key)
	if err != nil {
		return err
	}
	row, err := p.parseRow(stored, found)
	if err != nil {
		return fmt.Errorf("stored row %q: %w", key, err)
	}
	for i, st := range p.steps {
		if err := row[i].fold(st, doc); err != nil {
			return fmt.Errorf("event %d: reduce %s %q: %w", ev.Position, st.op, st.as, err)
		}
	}
	out, err := p.renderRow(key, row)
	if err != nil {
		return err
	}
	return t.Set(key, out)
}

// stepValue is one reduce step's output in a row.
type stepValue struct {
	n    int64             // count, sum, min, max
	set  bool              // min, max, last: a value has been seen
	last json.RawMessage   // last
	vals []json.RawMessage // set, sorted by text, distinct
}

func (p *specProjection) parseRow(stored []byte, found bool) ([]stepValue, error) {
	row := make([]stepValue, len(p.steps))
	if !found {
		return row, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stored, &fields); err != nil {
		return nil, err
	}
	for i, st := range p.steps {
		raw, ok := fields[st.as]
		if !ok {
			return nil, fmt.Errorf("field %q missing", st.as)
		}
		sv := &row[i]
		switch st.op {
		case OpCount, OpSum:
			if err := json.Unmarshal(raw, &sv.n); err != nil {
				return nil, fmt.Errorf("field %q: %w", st.as, err)
			}
		case OpMin, OpMax:
			var n *int64
			if err := json.Unmarshal(raw, &n); err != nil {
				return nil, fmt.Errorf("field %q: %w", st.as, err)
			}
			if n != nil {
				sv.n, sv.set = *n, true
			}
		case OpLast:
			if string(raw) != "null" {
				sv.last, sv.set = raw, true
			}
		case OpSet:
			if err := json.Unmarshal(raw, &sv.vals); err != nil {
				return nil, fmt.Errorf("field %q: %w", st.as, err)
			}
		}
	}
	return row, nil
}

// integer reads an int64 from a JSON number written as an integer.
func integer(v any) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, fmt.Errorf("value %s is not a number", jsonText(v))
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, fmt.Errorf("value %s overflows int64", n)
		}
		return 0, fmt.Errorf("value %s is not an integer", n)
	}
	return i, nil
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}

// fold applies one step to one event's data. A missing (or null) field
// leaves every step but count unchanged.
func (sv *stepValue) fold(st reduceStep, doc any) error {
	if st.op == OpCount {
		if sv.n == math.MaxInt64 {
			return errors.New("count overflows int64")
		}
		sv.n++
		return nil
	}
	v, found := st.field.resolve(doc)
	if !found || v == nil {
		return nil
	}
	switch st.op {
	case OpSum:
		x, err := integer(v)
		if err != nil {
			return err
		}
		s := sv.n + x
		if (x > 0 && s < sv.n) || (x < 0 && s > sv.n) {
			return fmt.Errorf("sum %d + %d overflows int64", sv.n, x)
		}
		sv.n = s
	case OpMin, OpMax:
		x, err := integer(v)
		if err != nil {
			return err
		}
		if !sv.set || (st.op == OpMin && x < sv.n) || (st.op == OpMax && x > sv.n) {
			sv.n, sv.set = x, true
		}
	case OpLast:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		sv.last, sv.set = b, true
	case OpSet:
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		i := sort.Search(len(sv.vals), func(i int) bool { return string(sv.vals[i]) >= string(b) })
		if i < len(sv.vals) && string(sv.vals[i]) == string(b) {
			return nil
		}
		if len(sv.vals) >= SetElementsMax {
			return fmt.Errorf("more than %d distinct values", SetElementsMax)
		}
		sv.vals = append(sv.vals, nil)
		copy(sv.vals[i+1:], sv.vals[i:])
		sv.vals[i] = b
	}
	return nil
}

// renderRow writes the row with "key" first, then the steps in spec order,
// so equal rows are equal bytes.
func (p *specProjection) renderRow(key string, row []stepValue) ([]byte, error) {
	var b bytes.Buffer
	k, err := json.Marshal(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	b.WriteString(`{"key":`)
	b.Write(k)
	for i, st := range p.steps {
		name, err := json.Marshal(st.as)
		if err != nil {
			return nil, fmt.Errorf("encode field name: %w", err)
		}
		b.WriteByte(',')
		b.Write(name)
		b.WriteByte(':')
		sv := row[i]
		switch st.op {
		case OpCount, OpSum:
			b.WriteString(strconv.FormatInt(sv.n, 10))
		case OpMin, OpMax:
			if sv.set {
				b.WriteString(strconv.FormatInt(sv.n, 10))
			} else {
				b.WriteString("null")
			}
		case OpLast:
			if sv.set {
				b.Write(sv.last)
			} else {
				b.WriteString("null")
			}
		case OpSet:
			b.WriteByte('[')
			for j, v := range sv.vals {
				if j > 0 {
					b.WriteByte(',')
				}
				b.Write(v)
			}
			b.WriteByte(']')
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
