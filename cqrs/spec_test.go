package cqrs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/ordoledger/ordo/eventlog"
)

const ordersJSON = `{"projections":[
  {"name":"orders-by-customer","version":1,"stream_prefix":"order-","event_types":["OrderPlaced"],
   "key":"/customer",
   "reduce":[{"op":"count","as":"orders"},{"op":"sum","field":"/total","as":"total"},
     {"op":"last","field":"/status","as":"status"},{"op":"min","field":"/total","as":"min_total"},
     {"op":"max","field":"/total","as":"max_total"},{"op":"set","field":"/sku","as":"skus"}]}
]}`

// The same projections file, written the ways people write YAML.
var ordersYAML = []string{
	`projections:
  - name: orders-by-customer
    version: 1
    stream_prefix: order-
    event_types: [OrderPlaced]
    key: /customer
    reduce:
      - op: count
        as: orders
      - op: sum
        field: /total
        as: total
      - {op: last, field: /status, as: status}
      - { op: min, field: "/total", as: 'min_total' }
      - op: max   # the largest
        field: /total
        as: max_total
      - op: set
        field: /sku
        as: skus
`,
	`# compact style, sequences at their key's indentation
---
projections:
- name: "orders-by-customer"
  version: 1
  stream_prefix: 'order-'
  event_types:
  - OrderPlaced
  key: "/customer"
  reduce:
  - op: count
    as: orders
  - op: sum
    field: /total
    as: total
  - op: last
    field: /status
    as: status
  - op: min
    field: /total
    as: min_total
  - op: max
    field: /total
    as: max_total
  - op: set
    field: /sku
    as: skus
`,
	"projections: [{name: orders-by-customer, version: 1, stream_prefix: order-, event_types: [OrderPlaced], key: /customer, " +
		`reduce: [{op: count, as: orders}, {op: sum, field: /total, as: total}, {op: last, field: /status, as: status}, ` +
		`{op: min, field: /total, as: min_total}, {op: max, field: /total, as: max_total}, {"op": "set", "field": "/sku", "as": "skus"}]}]` + "\r\n",
}

func withoutSource(specs []Spec) []Spec {
	out := make([]Spec, len(specs))
	for i, s := range specs {
		s.Source = ""
		out[i] = s
	}
	return out
}

func TestParseSpecsValid(t *testing.T) {
	specs, err := ParseSpecs("projections.json", []byte(ordersJSON))
	if err != nil {
		t.Fatal(err)
	}
	if got := withoutSource(specs); !reflect.DeepEqual(got, []Spec{ordersSpec}) {
		t.Fatalf("JSON specs\n got %+v\nwant %+v", got, ordersSpec)
	}
	if specs[0].Source != "projections.json:2" {
		t.Errorf("source %q", specs[0].Source)
	}
	for i, y := range ordersYAML {
		got, err := ParseSpecs("projections.yaml", []byte(y))
		if err != nil {
			t.Errorf("YAML %d: %v", i, err)
			continue
		}
		if !reflect.DeepEqual(withoutSource(got), []Spec{ordersSpec}) {
			t.Errorf("YAML %d\n got %+v\nwant %+v", i, got, ordersSpec)
		}
	}
	// An empty list is valid: no declarative projections.
	if specs, err := ParseSpecs("p.yml", []byte("projections: []\n")); err != nil || len(specs) != 0 {
		t.Errorf("empty list: %v %v", specs, err)
	}
}

func TestParseSpecsInvalid(t *testing.T) {
	valid := func(reduce string) string {
		return `{"projections":[
  {"name":"p","version":1,"key":"/k",
   "reduce":[` + reduce + `]}
]}`
	}
	for _, c := range []struct {
		file, content, want string
	}{
		{"projections.json", valid(`{"op":"count","as":"n"},
     {"op":"avg","field":"/x","as":"a"}`), `projections.json:4: reduce[1]: op "avg" unknown`},
		{"projections.json", valid(`{"op":"sum","as":"n"}`), `projections.json:3: reduce[0]: op "sum" needs a field`},
		{"projections.json", valid(`{"op":"count","field":"/x","as":"n"}`), `projections.json:3: reduce[0]: count takes no field`},
		{"projections.json", valid(`{"op":"count","as":"n"},{"op":"count","as":"n"}`), `projections.json:3: reduce[1]: as "n" used twice`},
		{"projections.json", valid(`{"op":"count","as":"position"}`), `as "position" is reserved`},
		{"projections.json", valid(`{"op":"sum","field":"x","as":"n"}`), `reduce[0]: field: JSON pointer "x" must start with /`},
		{"projections.json", valid(`{"op":"sum","field":"/a~2","as":"n"}`), `~ must be followed by 0 or 1`},
		{"projections.json", valid(`{"op":"count","as":"n","extra":1}`), `projections.json:3: reduce[0]: unknown field "extra"`},
		{"projections.json", valid(``), `reduce: 0 steps`},
		{"projections.json", `{"projections":[{"name":"streams","version":1,"key":"/k","reduce":[{"op":"count","as":"n"}]}]}`, `"streams" is a built-in`},
		{"projections.json", `{"projections":[{"name":"p","version":"1","key":"/k","reduce":[{"op":"count","as":"n"}]}]}`, `version: want an integer`},
		{"projections.json", `{"projections":[{"name":"p","version":0,"key":"/k","reduce":[{"op":"count","as":"n"}]}]}`, `version: 0, want 1 or more`},
		{"projections.json", `{"projections":[{"name":"p","key":"/k","reduce":[{"op":"count","as":"n"}]}]}`, `projections[0]: "version" is missing`},
		{"projections.json", `{"projections":[{"name":"p","version":1,"key":"/k","reduce":[{"op":"count","as":"n"}]},
{"name":"p","version":1,"key":"/k","reduce":[{"op":"count","as":"n"}]}]}`, `projections.json:2: name: projection "p" declared twice`},
		{"projections.json", `{"projections":[{"name":"P Q","version":1,"key":"/k","reduce":[{"op":"count","as":"n"}]}]}`, `name: projection name "P Q"`},
		{"projections.json", `{"projections":[{"name":"p","version":1,"key":"","reduce":[{"op":"count","as":"n"}]}]}`, `key: want a JSON pointer`},
		{"projections.json", `{"projections":[{"name":"p","version":1,"key":"/k","event_types":["A","A"],"reduce":[{"op":"count","as":"n"}]}]}`, `event_types[1]: "A" listed twice`},
		{"projections.json", "{\"projections\":[\n{\"name\":\"p\",,}]}", `projections.json:2: invalid character ','`},
		{"projections.json", "{\"projections\":[]} {}", `data after the document`},
		{"projections.json", "{\"projections\":[], \"projections\":[]}", `key "projections" repeated`},
		{"projections.json", `{"projection":[]}`, `unknown field "projection"`},
		{"projections.json", `[]`, `want an object with "projections"`},
		{"projections.json", `{"projections":`, `unexpected end`},
		{"projections.json", strings.Repeat("[", 40) + strings.Repeat("]", 40), `nested deeper than`},
		{"projections.txt", `{}`, `want a .json, .yaml or .yml file`},
		{"p.yaml", "projections:\n  - name: p\n    version: 1\n    key: /k\n    reduce:\n      - op: avg\n        field: /x\n        as: a\n", `p.yaml:6: reduce[0]: op "avg" unknown`},
		{"p.yaml", "projections:\n  - name: p\n\tversion: 1\n", `p.yaml:3: tab in indentation`},
		{"p.yaml", "projections:\n  - name: &a p\n", `p.yaml:2: anchors and aliases are not supported`},
		{"p.yaml", "projections:\n  - name: |\n      p\n", `p.yaml:2: block scalars are not supported`},
		{"p.yaml", "projections:\n  - name: p\n    version: 1\n      key: /k\n", `p.yaml:4: unexpected indentation`},
		{"p.yaml", "projections:\n  - name: \"p\n", `p.yaml:2: unterminated quoted string`},
		{"p.yaml", "projections:\n  - event_types: [a, b\n", `p.yaml:2: unterminated flow list`},
		{"p.yaml", "projections:\n  - name: p\n    name: q\n", `p.yaml:3: key "name" repeated`},
		{"p.yaml", "projections:\n  - name: a: b\n", `p.yaml:2: a mapping is not allowed here`},
		{"p.yaml", "projections:\n  - name: p\n    version: one\n", `p.yaml:3: version: want an integer`},
		{"p.yaml", "projections:\n  - name: 12\n", `p.yaml:2: name: want a string, got a number`},
		{"p.yaml", "projections:\n  - name: p\n---\nprojections: []\n", `p.yaml:3: directives and multiple documents`},
		{"p.yaml", "projections:\n- name: p\n  - x\n", `p.yaml:3: a list item where a key was expected`},
		{"p.yaml", "projections: []\nextra\n", `p.yaml:2: expected "key: value"`},
		{"p.yaml", "projections: []\n  more: 1\n", `p.yaml:2: unexpected indentation`},
		{"p.yaml", "projections: [{op: \"\\q\"}]\n", `p.yaml:1: escape \q is not supported`},
		{"p.yaml", "? complex\n", `p.yaml:1: complex keys are not supported`},
	} {
		_, err := ParseSpecs(c.file, []byte(c.content))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %q:\n got %v\nwant an error containing %q", c.file, c.content, err, c.want)
		}
	}
}

func TestLoadSpecs(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "projections.yaml")
	if err := os.WriteFile(path, []byte(ordersYAML[0]), 0o600); err != nil {
		t.Fatal(err)
	}
	specs, err := LoadSpecs(path)
	if err != nil || len(specs) != 1 || specs[0].Source != "projections.yaml:2" {
		t.Fatalf("LoadSpecs: %+v, %v", specs, err)
	}
	if _, err := LoadSpecs(filepath.Join(dir, "projections.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist", err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, SpecFileBytesMax+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSpecs(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized file: %v", err)
	}
}

func TestDeclarativeReduce(t *testing.T) {
	p, err := compileSpec(ordersSpec)
	if err != nil {
		t.Fatal(err)
	}
	tx := newMemTx()
	pos := uint64(0)
	apply := func(stream, typ, data string) error {
		pos++
		e := &eventlog.Event{Position: pos, Stream: stream, Type: typ, ContentType: contentJSON, Data: []byte(data)}
		if !p.Wants(e) {
			return errors.New("not wanted")
		}
		return p.Apply(tx, e)
	}
	for _, d := range []string{
		`{"customer":"c1","total":10,"status":"new","sku":"b"}`,
		`{"customer":"c1","total":-4,"status":"paid","sku":"a"}`,
		`{"customer":"c1","total":7,"sku":"b"}`,
		`{"customer":"c1","sku":{"id":2}}`,
		`{"customer":42,"total":1,"status":null}`,
	} {
		if err := apply("order-1", "OrderPlaced", d); err != nil {
			t.Fatalf("%s: %v", d, err)
		}
	}
	if got := string(tx.rows["c1"]); got != `{"key":"c1","orders":4,"total":13,"status":"paid","min_total":-4,"max_total":10,"skus":["a","b",{"id":2}]}` {
		t.Errorf("c1: %s", got)
	}
	if got := string(tx.rows["42"]); got != `{"key":"42","orders":1,"total":1,"status":null,"min_total":1,"max_total":1,"skus":[]}` {
		t.Errorf("42: %s", got)
	}
	if err := apply("customer-1", "OrderPlaced", `{"customer":"c1"}`); err == nil {
		t.Error("an event outside the stream prefix was wanted")
	}
	for _, d := range []string{`{"total":1}`, `{"customer":{"a":1}}`, `{"customer":""}`, `not json`, `{"customer":"c1"} {}`} {
		if err := apply("order-1", "OrderPlaced", d); !errors.Is(err, ErrSkip) {
			t.Errorf("%s: %v, want ErrSkip", d, err)
		}
	}
	for _, c := range []struct{ data, want string }{
		{`{"customer":"c1","total":1.5}`, "not an integer"},
		{`{"customer":"c1","total":"5"}`, "not a number"},
		{`{"customer":"c1","total":9223372036854775807}`, "overflows int64"},
		{`{"customer":"c1","total":99999999999999999999}`, "overflows int64"},
	} {
		if err := apply("order-1", "OrderPlaced", c.data); err == nil || errors.Is(err, ErrSkip) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.data, err, c.want)
		}
	}
}

func TestDeclarativeSetBound(t *testing.T) {
	p, err := compileSpec(Spec{Name: "s", Version: 1, Key: "/k", Reduce: []Reduce{{Op: OpSet, Field: "/v", As: "vs"}}})
	if err != nil {
		t.Fatal(err)
	}
	tx := newMemTx()
	for i := range SetElementsMax + 1 {
		e := &eventlog.Event{Position: uint64(i + 1), Stream: "x", ContentType: contentJSON, Data: fmt.Appendf(nil, `{"k":"a","v":%d}`, i)}
		err := p.Apply(tx, e)
		if i < SetElementsMax && err != nil {
			t.Fatalf("value %d: %v", i, err)
		}
		if i == SetElementsMax && (err == nil || !strings.Contains(err.Error(), "distinct values")) {
			t.Fatalf("value %d: %v, want the bound", i, err)
		}
	}
}

func TestPointer(t *testing.T) {
	doc, err := decodeJSON([]byte(`{"a":{"b/c":[10,{"~d":true}]},"":1}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ptr   string
		want  string
		found bool
	}{
		{"/a/b~1c/0", "10", true},
		{"/a/b~1c/1/~0d", "true", true},
		{"/", "1", true},
		{"/a/b~1c/2", "", false},
		{"/a/b~1c/01", "", false},
		{"/a/b~1c/-", "", false},
		{"/x", "", false},
		{"/a/b~1c/0/y", "", false},
	} {
		p, err := parsePointer(c.ptr)
		if err != nil {
			t.Fatalf("%s: %v", c.ptr, err)
		}
		v, found := p.resolve(doc)
		if found != c.found || (found && jsonText(v) != c.want) {
			t.Errorf("%s: %v %v, want %s %v", c.ptr, jsonText(v), found, c.want, c.found)
		}
	}
	if p, err := parsePointer(""); err != nil || len(p) != 0 {
		t.Errorf("root pointer: %v %v", p, err)
	}
}
