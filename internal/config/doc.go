// Package config reads xskgate's YAML configuration file.
//
// Parsing is strict because a typo in a DDoS gate's configuration should stop
// it at startup, not silently run it with a default: an unknown key, a value
// of the wrong type, a duplicate key or an invalid value is an error that
// names the file, the line and the key, and says what is expected:
//
//	xskgate.yaml:7: unknown key "rign" in section "umem"
//	xskgate.yaml:12: rings.rx: 1000 is not a power of two
//
// Every key is optional; an absent key, or a key with no value, keeps its
// default (Default). The protection section is package protect's Config,
// which validates its own rules (messages name "protection.rules[0]...").
//
// deploy/xskgate.yaml, the file users copy, writes every key with a working
// value and a comment; TestShippedConfigHasEveryKey derives the key list
// from the yaml tags and fails when a key is missing there.
//
// Parse works in three passes over one YAML document:
//
//  1. a walk of the yaml.Node tree against the Config struct's yaml tags
//     finds unknown and duplicate keys and values of the wrong shape or
//     type, with the node's line;
//  2. a yaml.Decoder with KnownFields(true) decodes the document over
//     Default(), so absent keys keep their defaults (pass 1 makes this
//     decode fail only on a bug, but it stays strict as a backstop);
//  3. Validate checks values and their relations; each problem names its
//     key, and Parse finds that key's line in the node tree.
//
// Validate is separate from Parse so that the daemon can run it again after
// command-line flags override values from the file. It reports every
// problem, one per line, not just the first.
//
// A Config is a plain value: copy it freely; nothing in it is shared except
// the CPUs slice and the Protection section's slices.
package config
