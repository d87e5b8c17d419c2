package cqrs

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ordoledger/ordo/eventlog"
)

var specErrorLine = regexp.MustCompile(`^p\.(json|yaml):(\d+): `)

// FuzzParseSpecs: any file content gives specs that compile, or errors that
// each name the file and a line of it; nothing panics. Accepted specs
// survive a round trip through JSON.
func FuzzParseSpecs(f *testing.F) {
	f.Add([]byte(ordersJSON))
	for _, y := range ordersYAML {
		f.Add([]byte(y))
	}
	f.Add([]byte("projections:\n- name: p\n  version: 1\n  key: /k\n  reduce: [{op: count, as: n}]\n"))
	f.Add([]byte("a: [1, {b: 'c''d'}, \"\\u00e9\"] # x\n- y\n  z: |\n"))
	f.Add([]byte(`{"projections":[{"name":"p","version":1,"key":"/k","reduce":[{"op":"sum","field":"/a~1b","as":"s"}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines := bytes.Count(data, []byte("\n")) + 1
		for _, name := range []string{"p.json", "p.yaml"} {
			specs, err := ParseSpecs(name, data)
			if err != nil {
				for _, msg := range strings.Split(err.Error(), "\n") {
					m := specErrorLine.FindStringSubmatch(msg)
					if m == nil {
						t.Fatalf("%s: error without file and line: %q", name, msg)
					}
					if n, _ := strconv.Atoi(m[2]); n < 1 || n > lines {
						t.Fatalf("%s: error on line %d of %d: %q", name, n, lines, msg)
					}
				}
				continue
			}
			for _, s := range specs {
				if _, err := compileSpec(s); err != nil {
					t.Fatalf("%s: accepted spec does not compile: %v", name, err)
				}
			}
			b, err := json.Marshal(map[string][]Spec{"projections": specs})
			if err != nil {
				t.Fatal(err)
			}
			again, err := ParseSpecs("p.json", b)
			if err != nil {
				t.Fatalf("%s: re-encoded specs refused: %v\n%s", name, err, b)
			}
			if !reflect.DeepEqual(withoutSource(again), withoutSource(specs)) {
				t.Fatalf("%s: round trip\n got %+v\nwant %+v", name, again, specs)
			}
		}
	})
}

// sameTree compares parse trees, ignoring lines.
func sameTree(a, b *node) bool {
	if a.kind != b.kind || a.text != b.text || len(a.items) != len(b.items) || !reflect.DeepEqual(a.keys, b.keys) {
		return false
	}
	for i := range a.items {
		if !sameTree(a.items[i], b.items[i]) {
			return false
		}
	}
	return true
}

// FuzzYAMLReadsOneLineJSON: one-line JSON is YAML flow syntax; the YAML
// parser must read every such document exactly as the JSON parser does.
func FuzzYAMLReadsOneLineJSON(f *testing.F) {
	f.Add(`{"projections":[{"name":"p","version":1,"key":"/k","reduce":[{"op":"count","as":"n"}]}]}`)
	f.Add(`[1, -2.5e3, "a\"b\\c\u00e9", true, false, null, {}, [], {"#":"x # y"}]`)
	f.Add(`{"a" : [ {"b":"c"} , 3 ] }`)
	f.Fuzz(func(t *testing.T, doc string) {
		doc = strings.TrimSpace(doc)
		if strings.ContainsAny(doc, "\r\n") || !utf8.ValidString(doc) {
			return
		}
		j, err := parseJSONTree([]byte(doc))
		if err != nil {
			return
		}
		y, err := parseYAMLTree([]byte(doc))
		if err != nil {
			t.Fatalf("JSON %q refused as YAML: %v", doc, err)
		}
		if !sameTree(j, y) {
			t.Fatalf("JSON %q read differently as YAML", doc)
		}
	})
}

// FuzzDecodeCursor: any cursor is refused or names a key that encodes back
// to it.
func FuzzDecodeCursor(f *testing.F) {
	f.Add(encodeCursor("order-17"))
	f.Add("")
	f.Add("AQ")
	f.Add("!!")
	f.Add(strings.Repeat("A", cursorCharsMax+1))
	f.Fuzz(func(t *testing.T, c string) {
		key, err := decodeCursor(c)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("cursor %q: %v is not ErrInvalid", c, err)
			}
			return
		}
		if c == "" {
			if key != "" {
				t.Fatalf("empty cursor gave %q", key)
			}
			return
		}
		if err := checkKey(key); err != nil {
			t.Fatalf("cursor %q gave a bad key: %v", c, err)
		}
		if again, err := decodeCursor(encodeCursor(key)); err != nil || again != key {
			t.Fatalf("key %q: round trip %q, %v", key, again, err)
		}
	})
}

// FuzzDecodeStored: the store's own records, read back from disk, never
// panic the decoder, and what decodes survives a round trip.
func FuzzDecodeStored(f *testing.F) {
	f.Add(marshalMeta(metaRecord{Gen: 3, Version: 2, ShadowGen: 9, ShadowVersion: 3}))
	f.Add(marshalCheckpoint(checkpoint{Position: 1 << 40, Skipped: 7}))
	f.Add([]byte{0xa1, 0x01, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMeta(b); err == nil {
			if again, err := decodeMeta(marshalMeta(m)); err != nil || again != m {
				t.Fatalf("meta %x: %+v round trips to %+v, %v", b, m, again, err)
			}
		}
		if c, err := decodeCheckpoint(b); err == nil {
			if again, err := decodeCheckpoint(marshalCheckpoint(c)); err != nil || again != c {
				t.Fatalf("checkpoint %x: %+v round trips to %+v, %v", b, c, again, err)
			}
		}
	})
}

// FuzzProjectionsApply feeds arbitrary event data to the declarative and
// balances projections: they return errors, never panic, and every row they
// store is a JSON object that they can read back.
func FuzzProjectionsApply(f *testing.F) {
	f.Add("OrderPlaced", `{"customer":"c","total":5,"status":"x","sku":[1,{"a":null}]}`)
	f.Add("AccountCreated", `{"id":"A","code":1}`)
	f.Add("TransferCreated", `{"id":"T","debit_account":"A","credit_account":"B","amount":5,"pending":true}`)
	f.Add("PendingPosted", `{"pending_id":"T","amount":5,"debit_account":"A","credit_account":"B"}`)
	f.Fuzz(func(t *testing.T, typ, data string) {
		orders, err := compileSpec(ordersSpec)
		if err != nil {
			t.Fatal(err)
		}
		tx := newMemTx()
		for _, id := range []string{"A", "B"} {
			s, ty, d := account(id, 1)
			e := &eventlog.Event{Position: 1, Stream: s, Type: ty, ContentType: contentJSON, Data: []byte(d)}
			if err := (balancesProjection{}).Apply(tx, e); err != nil {
				t.Fatal(err)
			}
		}
		for i, stream := range []string{"order-1", "account-A", "transfer-T"} {
			e := &eventlog.Event{Position: uint64(2 + i), Stream: stream, Type: typ, ContentType: contentJSON, Data: []byte(data)}
			for _, p := range []Projection{orders, balancesProjection{}} {
				if p.Wants(e) {
					_ = p.Apply(tx, e)
				}
			}
		}
		for _, k := range []string{"c", "A", "B"} {
			if b, ok := tx.rows[k]; ok {
				if err := checkRow(b); err != nil {
					t.Fatalf("row %q: %v: %s", k, err, b)
				}
			}
		}
		for k, b := range tx.rows {
			if _, err := orders.parseRow(b, true); err != nil && k != "A" && k != "B" {
				t.Fatalf("row %q does not read back: %v: %s", k, err, b)
			}
		}
	})
}
