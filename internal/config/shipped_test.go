package config

import (
	"encoding"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// shipped is the file users copy; the tests read it where it ships.
const shipped = "../../deploy/xskgate.yaml"

// keyPaths lists every key the configuration accepts, as dotted paths
// ("protection.rules[].syn_flood.action"), from the yaml tags of t.
func keyPaths(t reflect.Type, prefix string) []string {
	text := reflect.TypeFor[encoding.TextUnmarshaler]()
	ym := reflect.TypeFor[yaml.Unmarshaler]()
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(text) || reflect.PointerTo(t).Implements(ym) {
		return nil // a scalar written as text: a prefix, a size
	}
	switch t.Kind() {
	case reflect.Slice:
		return keyPaths(t.Elem(), prefix+"[]")
	case reflect.Struct:
	default:
		return nil
	}
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		p := name
		if prefix != "" {
			p = prefix + "." + name
		}
		out = append(out, p)
		out = append(out, keyPaths(f.Type, p)...)
	}
	return out
}

// fileKeys lists the keys written in a YAML node tree, as keyPaths does.
func fileKeys(n *yaml.Node, prefix string, out map[string]bool) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			fileKeys(c, prefix, out)
		}
	case yaml.SequenceNode:
		for _, c := range n.Content {
			fileKeys(c, prefix+"[]", out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			p := n.Content[i].Value
			if prefix != "" {
				p = prefix + "." + p
			}
			out[p] = true
			fileKeys(n.Content[i+1], p, out)
		}
	}
}

// TestShippedConfigHasEveryKey: deploy/xskgate.yaml writes every key the
// configuration accepts (a working example of each, not a comment), so
// that nothing a user can set is undocumented, and no key in it is one
// the parser would refuse.
func TestShippedConfigHasEveryKey(t *testing.T) {
	b, err := os.ReadFile(shipped)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	fileKeys(&doc, "", have)
	want := keyPaths(reflect.TypeFor[Config](), "")
	if len(want) < 50 {
		t.Fatalf("only %d keys found in Config: the walk is broken: %q", len(want), want)
	}
	for _, k := range want {
		if !have[k] {
			t.Errorf("%s: key %s is not in the shipped file: add it with a working value and a comment", shipped, k)
		}
	}
	for k := range have {
		if !slices.Contains(want, k) {
			t.Errorf("%s: key %s is not a configuration key", shipped, k)
		}
	}
}
