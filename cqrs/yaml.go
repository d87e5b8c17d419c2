package cqrs

import (
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// parseYAMLTree parses the subset of YAML 1.2 a projections file needs, and
// refuses the rest by line rather than guess:
//
//   - block mappings and block sequences, indented with spaces; a sequence
//     may sit at its parent key's indentation; "- key: value" items;
//   - flow sequences and flow mappings on one line ([a, b], {op: count});
//   - plain, 'single-quoted' and "double-quoted" scalars on one line, plain
//     ones resolved by the core schema (null, true/false, numbers, strings);
//   - comments, and one leading "---".
//
// Not supported (an error names the line): tabs in indentation, anchors,
// aliases, tags, block scalars (| and >), multi-line scalars and flow
// collections, complex keys, directives and several documents.
func parseYAMLTree(data []byte) (*node, error) {
	if !utf8.Valid(data) {
		return nil, errAt(1, "not UTF-8")
	}
	p := &yamlParser{}
	for i, raw := range strings.Split(string(data), "\n") {
		raw = strings.TrimSuffix(raw, "\r")
		content := strings.TrimLeft(raw, " ")
		indent := len(raw) - len(content)
		if strings.HasPrefix(content, "\t") {
			return nil, errAt(i+1, "tab in indentation")
		}
		content = strings.TrimRight(content, " \t")
		if content == "" || content[0] == '#' {
			continue
		}
		if content == "---" && len(p.lines) == 0 && indent == 0 {
			continue
		}
		if indent == 0 && (content == "---" || content == "..." || content[0] == '%') {
			return nil, errAt(i+1, "directives and multiple documents are not supported")
		}
		p.lines = append(p.lines, yamlLine{no: i + 1, indent: indent, text: content})
	}
	if len(p.lines) == 0 {
		return &node{kind: kindNull, line: 1, text: "null"}, nil
	}
	root, err := p.block(p.lines[0].indent, 0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.lines) {
		return nil, errAt(p.lines[p.pos].no, "unexpected content (check the indentation)")
	}
	return root, nil
}

type yamlLine struct {
	no, indent int
	text       string
}

type yamlParser struct {
	lines []yamlLine
	pos   int
}

func (p *yamlParser) cur() *yamlLine {
	if p.pos < len(p.lines) {
		return &p.lines[p.pos]
	}
	return nil
}

// blanks separate tokens within a line (tabs are refused only as indentation).
const blanks = " \t"

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

// block parses the block node starting at the current line, at indent.
func (p *yamlParser) block(indent, depth int) (*node, error) {
	l := p.cur()
	if depth > specNestingMax {
		return nil, errAt(l.no, "nested deeper than %d levels", specNestingMax)
	}
	if isSeqItem(l.text) {
		return p.sequence(indent, depth)
	}
	if _, _, ok, err := splitMapEntry(l.text, l.no); err != nil {
		return nil, err
	} else if ok {
		return p.mapping(indent, depth)
	}
	n, err := parseInlineValue(l.text, l.no, depth)
	if err != nil {
		return nil, err
	}
	p.pos++
	if next := p.cur(); next != nil && next.indent > indent {
		return nil, errAt(next.no, "unexpected indentation (multi-line scalars are not supported)")
	}
	return n, nil
}

// mapping parses "key: value" lines at indent.
func (p *yamlParser) mapping(indent, depth int) (*node, error) {
	n := &node{kind: kindMap, line: p.cur().no}
	seen := make(map[string]bool)
	for l := p.cur(); l != nil && l.indent == indent; l = p.cur() {
		if isSeqItem(l.text) {
			return nil, errAt(l.no, "a list item where a key was expected")
		}
		key, rest, ok, err := splitMapEntry(l.text, l.no)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, errAt(l.no, "expected \"key: value\"")
		}
		if seen[key] {
			return nil, errAt(l.no, "key %q repeated", key)
		}
		seen[key] = true
		line := l.no
		v, err := p.entryValue(indent, rest, line, depth, true)
		if err != nil {
			return nil, err
		}
		n.keys = append(n.keys, key)
		n.items = append(n.items, v)
	}
	if l := p.cur(); l != nil && l.indent > indent {
		return nil, errAt(l.no, "unexpected indentation")
	}
	return n, nil
}

// entryValue parses what follows "key:" or "- " on line: an inline value, or
// a block on the following, more indented, lines (for a key, a sequence at
// the key's own indentation too). It consumes the current line.
func (p *yamlParser) entryValue(indent int, rest string, line, depth int, isKey bool) (*node, error) {
	if rest != "" {
		p.pos++
		v, err := parseInlineValue(rest, line, depth+1)
		if err != nil {
			return nil, err
		}
		if next := p.cur(); next != nil && next.indent > indent {
			return nil, errAt(next.no, "unexpected indentation (multi-line scalars are not supported)")
		}
		return v, nil
	}
	p.pos++
	next := p.cur()
	switch {
	case next != nil && next.indent > indent:
		return p.block(next.indent, depth+1)
	case isKey && next != nil && next.indent == indent && isSeqItem(next.text):
		return p.sequence(indent, depth+1)
	}
	return &node{kind: kindNull, line: line, text: "null"}, nil
}

// sequence parses "- item" lines at indent.
func (p *yamlParser) sequence(indent, depth int) (*node, error) {
	n := &node{kind: kindList, line: p.cur().no}
	for l := p.cur(); l != nil && l.indent == indent && isSeqItem(l.text); l = p.cur() {
		rest := strings.TrimLeft(l.text[1:], blanks)
		col := indent + len(l.text) - len(rest)
		rest = dropComment(rest)
		var (
			item *node
			err  error
		)
		_, _, isMap, err := splitMapEntry(rest, l.no)
		switch {
		case err != nil:
			return nil, err
		case rest != "" && (isMap || isSeqItem(rest)):
			// "- key: value" or "- - x": the item is a block starting
			// at the column after the dash.
			*l = yamlLine{no: l.no, indent: col, text: rest}
			item, err = p.block(col, depth+1)
		default:
			item, err = p.entryValue(indent, rest, l.no, depth, false)
		}
		if err != nil {
			return nil, err
		}
		n.items = append(n.items, item)
	}
	if l := p.cur(); l != nil && l.indent > indent {
		return nil, errAt(l.no, "unexpected indentation")
	}
	return n, nil
}

// splitMapEntry recognises "key: rest" (rest may be empty). ok is false for
// anything else.
func splitMapEntry(text string, line int) (key, rest string, ok bool, err error) {
	if text == "" {
		return "", "", false, nil
	}
	switch text[0] {
	case '[', '{':
		return "", "", false, nil
	case '"', '\'':
		k, after, err := parseQuoted(text, line)
		if err != nil {
			return "", "", false, err
		}
		after = strings.TrimLeft(after, blanks)
		if after == ":" || (len(after) > 1 && after[0] == ':' && isBlank(after[1])) {
			return k, dropComment(strings.TrimLeft(after[1:], blanks)), true, nil
		}
		return "", "", false, nil
	case '?':
		return "", "", false, errAt(line, "complex keys are not supported")
	}
	for i := 0; i < len(text); i++ {
		switch {
		case text[i] == '#' && i > 0 && isBlank(text[i-1]):
			return "", "", false, nil
		case text[i] == ':' && (i+1 == len(text) || isBlank(text[i+1])):
			k := strings.TrimRight(text[:i], blanks)
			if err := checkPlainStart(k, line); err != nil {
				return "", "", false, err
			}
			return k, dropComment(strings.TrimLeft(text[i+1:], blanks)), true, nil
		}
	}
	return "", "", false, nil
}

// dropComment empties a value that is only a comment.
func dropComment(rest string) string {
	if strings.HasPrefix(rest, "#") {
		return ""
	}
	return rest
}

// parseInlineValue parses a whole value on one line, comments allowed after it.
func parseInlineValue(text string, line, depth int) (*node, error) {
	n, rest, err := parseFlowValue(text, line, depth, false)
	if err != nil {
		return nil, err
	}
	rest = strings.TrimLeft(rest, blanks)
	if rest != "" && rest[0] != '#' {
		return nil, errAt(line, "unexpected %q after a value", rest)
	}
	return n, nil
}

// parseFlowValue parses one value at the start of text and returns the rest.
// inFlow: inside [ ] or { }, where , ] } : end plain scalars.
func parseFlowValue(text string, line, depth int, inFlow bool) (*node, string, error) {
	if depth > specNestingMax {
		return nil, "", errAt(line, "nested deeper than %d levels", specNestingMax)
	}
	text = strings.TrimLeft(text, blanks)
	if text == "" {
		return &node{kind: kindNull, line: line, text: "null"}, "", nil
	}
	switch text[0] {
	case '"', '\'':
		s, rest, err := parseQuoted(text, line)
		if err != nil {
			return nil, "", err
		}
		return &node{kind: kindString, line: line, text: s}, rest, nil
	case '#':
		return &node{kind: kindNull, line: line, text: "null"}, text, nil
	case '[':
		return parseFlowSeq(text[1:], line, depth)
	case '{':
		return parseFlowMap(text[1:], line, depth)
	}
	end := plainEnd(text, inFlow)
	s := strings.TrimRight(text[:end], blanks)
	if err := checkPlainStart(s, line); err != nil {
		return nil, "", err
	}
	if !inFlow && (strings.Contains(s, ": ") || strings.Contains(s, ":\t")) {
		return nil, "", errAt(line, "a mapping is not allowed here")
	}
	return resolvePlain(s, line), text[end:], nil
}

// plainEnd is where a plain scalar starting text ends.
func plainEnd(text string, inFlow bool) int {
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '#' && i > 0 && isBlank(text[i-1]):
			return i
		case inFlow && (c == ',' || c == ']' || c == '}' || c == '[' || c == '{'):
			return i
		case inFlow && c == ':' && (i+1 == len(text) || strings.IndexByte(" \t,]}", text[i+1]) >= 0):
			return i
		}
	}
	return len(text)
}

func checkPlainStart(s string, line int) error {
	if s == "" {
		return nil
	}
	if (s[0] == '-' || s[0] == ':') && (len(s) == 1 || isBlank(s[1])) {
		return errAt(line, "%q is not allowed here", s[0])
	}
	switch s[0] {
	case '&', '*':
		return errAt(line, "anchors and aliases are not supported")
	case '!':
		return errAt(line, "tags are not supported")
	case '|', '>':
		return errAt(line, "block scalars are not supported")
	case '@', '`', '%', '?', ',', ']', '}':
		return errAt(line, "a plain value cannot start with %q", s[0])
	}
	return nil
}

var (
	yamlInt   = regexp.MustCompile(`^[-+]?[0-9]+$`)
	yamlFloat = regexp.MustCompile(`^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$`)
)

// resolvePlain applies YAML 1.2's core schema to a plain scalar.
func resolvePlain(s string, line int) *node {
	switch {
	case s == "" || s == "~" || s == "null" || s == "Null" || s == "NULL":
		return &node{kind: kindNull, line: line, text: "null"}
	case s == "true" || s == "True" || s == "TRUE":
		return &node{kind: kindBool, line: line, text: "true"}
	case s == "false" || s == "False" || s == "FALSE":
		return &node{kind: kindBool, line: line, text: "false"}
	case yamlInt.MatchString(s) || yamlFloat.MatchString(s):
		return &node{kind: kindNumber, line: line, text: s}
	}
	return &node{kind: kindString, line: line, text: s}
}

func parseFlowSeq(text string, line, depth int) (*node, string, error) {
	n := &node{kind: kindList, line: line}
	rest := strings.TrimLeft(text, blanks)
	if strings.HasPrefix(rest, "]") {
		return n, rest[1:], nil
	}
	for {
		item, r, err := parseFlowValue(rest, line, depth+1, true)
		if err != nil {
			return nil, "", err
		}
		r = strings.TrimLeft(r, blanks)
		if strings.HasPrefix(r, ":") {
			return nil, "", errAt(line, "mappings inside a flow list are not supported")
		}
		n.items = append(n.items, item)
		switch {
		case strings.HasPrefix(r, "]"):
			return n, r[1:], nil
		case strings.HasPrefix(r, ","):
			rest = strings.TrimLeft(r[1:], blanks)
			if strings.HasPrefix(rest, "]") {
				return n, rest[1:], nil
			}
		default:
			return nil, "", errAt(line, "unterminated flow list (it must close on the same line)")
		}
	}
}

func parseFlowMap(text string, line, depth int) (*node, string, error) {
	n := &node{kind: kindMap, line: line}
	seen := make(map[string]bool)
	rest := strings.TrimLeft(text, blanks)
	if strings.HasPrefix(rest, "}") {
		return n, rest[1:], nil
	}
	for {
		k, r, err := parseFlowValue(rest, line, depth+1, true)
		if err != nil {
			return nil, "", err
		}
		if k.kind == kindList || k.kind == kindMap {
			return nil, "", errAt(line, "complex keys are not supported")
		}
		r = strings.TrimLeft(r, blanks)
		if !strings.HasPrefix(r, ":") {
			return nil, "", errAt(line, "expected \":\" after key %q in a flow mapping", k.text)
		}
		if seen[k.text] {
			return nil, "", errAt(line, "key %q repeated", k.text)
		}
		seen[k.text] = true
		v, r, err := parseFlowValue(r[1:], line, depth+1, true)
		if err != nil {
			return nil, "", err
		}
		n.keys = append(n.keys, k.text)
		n.items = append(n.items, v)
		r = strings.TrimLeft(r, blanks)
		switch {
		case strings.HasPrefix(r, "}"):
			return n, r[1:], nil
		case strings.HasPrefix(r, ","):
			rest = strings.TrimLeft(r[1:], blanks)
			if strings.HasPrefix(rest, "}") {
				return n, rest[1:], nil
			}
		default:
			return nil, "", errAt(line, "unterminated flow mapping (it must close on the same line)")
		}
	}
}

// parseQuoted parses a quoted scalar at the start of text.
func parseQuoted(text string, line int) (string, string, error) {
	q := text[0]
	var b strings.Builder
	for i := 1; i < len(text); i++ {
		c := text[i]
		switch {
		case q == '\'' && c == '\'':
			if i+1 < len(text) && text[i+1] == '\'' {
				b.WriteByte('\'')
				i++
				continue
			}
			return b.String(), text[i+1:], nil
		case q == '"' && c == '"':
			return b.String(), text[i+1:], nil
		case q == '"' && c == '\\':
			n, err := unescape(text[i+1:], &b, line)
			if err != nil {
				return "", "", err
			}
			i += n
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errAt(line, "unterminated quoted string (it must close on the same line)")
}

var simpleEscapes = map[byte]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', '0': 0}

// unescape writes the escape at the start of s (after the backslash) and
// returns how many bytes it used.
func unescape(s string, b *strings.Builder, line int) (int, error) {
	if s == "" {
		return 0, errAt(line, "unterminated escape")
	}
	if c, ok := simpleEscapes[s[0]]; ok {
		b.WriteByte(c)
		return 1, nil
	}
	if s[0] != 'u' {
		return 0, errAt(line, "escape \\%c is not supported", s[0])
	}
	r1, err := hex4(s[1:], line)
	if err != nil {
		return 0, err
	}
	if !utf16.IsSurrogate(r1) {
		b.WriteRune(r1)
		return 5, nil
	}
	if len(s) >= 11 && s[5] == '\\' && s[6] == 'u' {
		r2, err := hex4(s[7:], line)
		if err != nil {
			return 0, err
		}
		if r := utf16.DecodeRune(r1, r2); r != utf8.RuneError {
			b.WriteRune(r)
			return 11, nil
		}
	}
	return 0, errAt(line, "unpaired surrogate in \\u escape")
}

func hex4(s string, line int) (rune, error) {
	if len(s) < 4 {
		return 0, errAt(line, "short \\u escape")
	}
	v, err := strconv.ParseUint(s[:4], 16, 16)
	if err != nil {
		return 0, errAt(line, "bad \\u escape %q", s[:4])
	}
	return rune(v), nil
}
