package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Load reads and parses the configuration file at path; see Parse.
func Load(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w (pass --config, or create the file from deploy/xskgate.yaml)", err)
	}
	return Parse(path, data)
}

// Parse parses a configuration file's contents over Default() and validates
// the result. name is used in error messages only. The error is nil or one
// or more *Error joined with errors.Join, each naming name, the line and the
// key.
func Parse(name string, data []byte) (Config, error) {
	cfg := Default()
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty file: all defaults
			return cfg, nil
		}
		return Config{}, syntaxError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return Config{}, syntaxError(name, err)
		}
		return Config{}, &Error{File: name, Line: extra.Line, Msg: "a second YAML document (---): keep the configuration in one document"}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return cfg, nil
		}
		root = root.Content[0]
	}

	// Pass 1: keys, shapes and types, with lines.
	w := walker{file: name}
	w.walk(root, reflect.TypeFor[Config](), "")
	if len(w.errs) > 0 {
		return Config{}, joinErrors(w.errs)
	}

	// Pass 2: the strict decode over the defaults. Pass 1 accepted the
	// document, so an error here is a gap in pass 1; it still carries a line.
	strict := yaml.NewDecoder(bytes.NewReader(data))
	strict.KnownFields(true)
	if err := strict.Decode(&cfg); err != nil {
		return Config{}, fmt.Errorf("%s: %w", name, err)
	}

	// Pass 3: values, with the line of each offending key.
	ps := cfg.problems()
	for _, p := range ps {
		p.File = name
		p.Line = lookup(root, p.Key)
	}
	slices.SortStableFunc(ps, func(a, b *Error) int { return a.Line - b.Line })
	if len(ps) > 0 {
		return Config{}, joinErrors(ps)
	}
	return cfg, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxError turns yaml.v3's "yaml: line N: msg" into "name:N: msg".
func syntaxError(name string, err error) error {
	if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
}

// walker checks a node tree against a struct type using its yaml tags.
type walker struct {
	file string
	errs []*Error
}

func (w *walker) fail(n *yaml.Node, key, format string, args ...any) {
	w.errs = append(w.errs, &Error{File: w.file, Line: n.Line, Key: key, Msg: fmt.Sprintf(format, args...)})
}

var (
	nodeType     = reflect.TypeFor[yaml.Node]()
	durationType = reflect.TypeFor[time.Duration]()
)

// walk checks node n against type t; path is n's dotted key ("" for the root).
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) {
	if isNull(n) {
		return // keeps the default
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t == nodeType:
		if n.Kind != yaml.MappingNode {
			w.fail(n, path, "want a mapping, got %s", describe(n))
		}
	case t.Kind() == reflect.Pointer:
		w.walk(n, t.Elem(), path)
	case reflect.PointerTo(t).Implements(textUnmarshaler):
		// netip.Prefix and the like: a struct written as one scalar.
		w.scalar(n, t, path)
	case t.Kind() == reflect.Struct:
		w.walkStruct(n, t, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, path, "want a list such as [0, 1], got %s", describe(n))
			return
		}
		for i, e := range n.Content {
			w.walk(e, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		w.scalar(n, t, path)
	}
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, path string) {
	if n.Kind != yaml.MappingNode {
		if path == "" {
			w.fail(n, "", "the file must be a mapping of keys such as \"outer: eth0\", got %s", describe(n))
		} else {
			w.fail(n, path, "want a section of keys, got %s", describe(n))
		}
		return
	}
	fields := yamlFields(t)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			w.fail(k, path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		name := k.Value
		if first, dup := seen[name]; dup {
			w.fail(k, "", "duplicate key %q%s (first at line %d)", name, inSection(path), first)
			continue
		}
		seen[name] = k.Line
		f, ok := fields[name]
		if !ok {
			msg := fmt.Sprintf("unknown key %q%s", name, inSection(path))
			if s := suggest(name, fields); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			w.fail(k, "", "%s", msg)
			continue
		}
		w.walk(v, f.Type, join(path, name))
	}
}

func inSection(path string) string {
	if path == "" {
		return ""
	}
	return fmt.Sprintf(" in section %q", path)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// scalar checks that n decodes into a value of type t.
func (w *walker) scalar(n *yaml.Node, t reflect.Type, path string) {
	want := wantText(t)
	if n.Kind != yaml.ScalarNode {
		w.fail(n, path, "want %s, got %s", want, describe(n))
		return
	}
	if t == durationType {
		// yaml.v3 decodes only strings into a Duration; say what to write.
		if n.Tag != "!!str" {
			w.fail(n, path, "want %s, got %s (a duration needs a unit)", want, describe(n))
			return
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			w.fail(n, path, "want %s, got %s", want, describe(n))
		}
		return
	}
	if t.Kind() == reflect.String {
		// Any scalar is a valid string ("eth0", but also "1"); only
		// mappings and sequences were wrong, and they are caught above.
		return
	}
	if err := n.Decode(reflect.New(t).Interface()); err != nil {
		w.fail(n, path, "want %s, got %s", want, describe(n))
	}
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

func wantText(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[netip.Prefix]():
		return "a prefix such as 198.18.0.0/24"
	case t == durationType:
		return "a duration such as 500ms or 2s"
	case t == reflect.TypeFor[Size]():
		return "a size such as 256MiB or 1GiB"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() == reflect.String:
		return "a string"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		return "an integer"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		max := uint64(math.MaxUint64) >> (64 - t.Bits())
		return fmt.Sprintf("an integer from 0 to %d", max)
	}
	return t.String()
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!str" {
			return strconv.Quote(n.Value)
		}
		return n.Value
	}
	return "an alias or document"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// yamlFields maps a struct's yaml keys to its fields.
func yamlFields(t reflect.Type) map[string]reflect.StructField {
	m := map[string]reflect.StructField{}
	for f := range t.Fields() {
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == "" || tag == "-" || !f.IsExported() {
			continue
		}
		m[tag] = f
	}
	return m
}

// suggest returns the known key closest to name, if it is a likely typo.
func suggest(name string, fields map[string]reflect.StructField) string {
	// One edit in a short key, two in a longer one: "foo" is not a typo
	// of "log".
	best, bestD := "", 2
	if len(name) >= 6 {
		bestD = 3
	}
	for k := range fields {
		if d := editDistance(name, k); d < bestD || d == bestD && k < best {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance, bytewise (keys are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// lookup returns the line of a key path such as "rings.rx" or
// "engine.cpus[1]": the key's line, or the list element's for an index; 0 if
// the file does not set the key.
func lookup(root *yaml.Node, path string) int {
	if path == "" {
		return root.Line
	}
	n, line := root, 0
	for _, seg := range strings.Split(path, ".") {
		name, idx := seg, -1
		if i := strings.IndexByte(seg, '['); i >= 0 && strings.HasSuffix(seg, "]") {
			v, err := strconv.Atoi(seg[i+1 : len(seg)-1])
			if err != nil {
				return 0
			}
			name, idx = seg[:i], v
		}
		if n.Kind != yaml.MappingNode {
			return 0
		}
		var key, val *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == name {
				key, val = n.Content[i], n.Content[i+1]
			}
		}
		if key == nil {
			return 0
		}
		n, line = val, key.Line
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return 0
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}
