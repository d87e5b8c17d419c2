package cqrs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
)

// A spec file, JSON or YAML, is first parsed into a tree of nodes that
// remember their line, so that every complaint about its content can name
// the line it is about.
type nodeKind int

const (
	kindNull nodeKind = iota
	kindBool
	kindNumber
	kindString
	kindList
	kindMap
)

func (k nodeKind) String() string {
	return [...]string{"null", "a boolean", "a number", "a string", "a list", "an object"}[k]
}

// specNestingMax bounds how deep a spec file may nest: the schema needs 4
// levels, and the parsers recurse.
const specNestingMax = 16

type node struct {
	kind  nodeKind
	line  int
	text  string // scalars: the string, or the number or boolean as written
	items []*node
	keys  []string // maps: keys in file order, values in items
}

func (n *node) field(key string) *node {
	for i, k := range n.keys {
		if k == key {
			return n.items[i]
		}
	}
	return nil
}

// lineError is a parse error on a line of a spec file.
type lineError struct {
	line int
	msg  string
}

func (e *lineError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

func errAt(line int, format string, args ...any) error {
	return &lineError{line: line, msg: fmt.Sprintf(format, args...)}
}

// lineIndex turns byte offsets into 1-based line numbers.
type lineIndex []int

func newLineIndex(data []byte) lineIndex {
	idx := lineIndex{0}
	for i, c := range data {
		if c == '\n' {
			idx = append(idx, i+1)
		}
	}
	return idx
}

func (l lineIndex) line(offset int64) int {
	return sort.Search(len(l), func(i int) bool { return int64(l[i]) > offset })
}

// parseJSONTree parses a JSON document with encoding/json's tokenizer.
func parseJSONTree(data []byte) (*node, error) {
	p := &jsonTreeParser{dec: json.NewDecoder(bytes.NewReader(data)), lines: newLineIndex(data)}
	p.dec.UseNumber()
	root, err := p.value(0)
	if err != nil {
		return nil, p.wrap(err)
	}
	if _, err := p.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errAt(p.line(), "data after the document")
	}
	return root, nil
}

type jsonTreeParser struct {
	dec   *json.Decoder
	lines lineIndex
}

// line is the line of the token just read.
func (p *jsonTreeParser) line() int { return p.lines.line(max(p.dec.InputOffset()-1, 0)) }

// wrap gives encoding/json's syntax errors a line.
func (p *jsonTreeParser) wrap(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return errAt(p.lines.line(max(se.Offset-1, 0)), "%v", err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errAt(p.line(), "unexpected end of the document")
	}
	return err
}

func (p *jsonTreeParser) value(depth int) (*node, error) {
	tok, err := p.dec.Token()
	if err != nil {
		return nil, err
	}
	line := p.line()
	if depth > specNestingMax {
		return nil, errAt(line, "nested deeper than %d levels", specNestingMax)
	}
	switch t := tok.(type) {
	case nil:
		return &node{kind: kindNull, line: line, text: "null"}, nil
	case bool:
		return &node{kind: kindBool, line: line, text: fmt.Sprint(t)}, nil
	case json.Number:
		return &node{kind: kindNumber, line: line, text: t.String()}, nil
	case string:
		return &node{kind: kindString, line: line, text: t}, nil
	case json.Delim:
		switch t {
		case '[':
			n := &node{kind: kindList, line: line}
			for p.dec.More() {
				item, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, item)
			}
			_, err := p.dec.Token()
			return n, err
		case '{':
			n := &node{kind: kindMap, line: line}
			seen := make(map[string]bool)
			for p.dec.More() {
				kt, err := p.dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, errAt(p.line(), "object key is not a string")
				}
				if seen[key] {
					return nil, errAt(p.line(), "key %q repeated", key)
				}
				seen[key] = true
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.keys = append(n.keys, key)
				n.items = append(n.items, v)
			}
			_, err := p.dec.Token()
			return n, err
		}
	}
	return nil, errAt(line, "unexpected %v", tok)
}
