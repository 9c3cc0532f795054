package config

import (
	"os"
	"testing"
)

// FuzzParse: any bytes give an error or a config that passes its own
// validation, never a panic.
func FuzzParse(f *testing.F) {
	for _, p := range []string{shipped} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(full))
	f.Add([]byte("outer: eth0\ninner: eth1\nqueues: 2\n"))
	f.Add([]byte("protection:\n  enabled: true\n  prefixes: [198.18.0.0/24]\n  rules:\n    - {scope: 198.18.0.0/24, mode: mitigate}\n"))
	f.Add([]byte("umem: {frames: -1}\n"))
	f.Add([]byte("rings: [1, 2]\n"))
	f.Add([]byte("\x00\xff: ["))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Parse("fuzz.yaml", b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted a config that Validate refuses: %v", err)
		}
		_ = c.Gate()
		_ = c.IntegrityChecks()
	})
}
