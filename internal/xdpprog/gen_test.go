package xdpprog

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestObjectsCurrent rebuilds the XDP program from bpf/steer.c with the
// command of gen.go and compares it with the committed object and
// bindings: a change to the C source must come with `go generate`.
func TestObjectsCurrent(t *testing.T) {
	if _, err := exec.LookPath("clang"); err != nil {
		t.Skip("clang not installed (Debian: apt-get install clang libbpf-dev): cannot rebuild the XDP objects to compare")
	}
	if _, err := os.Stat("/usr/include/bpf/bpf_helpers.h"); err != nil {
		t.Skip("libbpf headers not installed (Debian: apt-get install libbpf-dev): cannot rebuild the XDP objects to compare")
	}
	if testing.Short() {
		t.Skip("rebuilds the XDP program with clang")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "run", "github.com/cilium/ebpf/cmd/bpf2go", "-cc", "clang",
		"-cflags", "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu", "-target", "bpfel", "-type", "config", "-type", "scope",
		"-output-dir", dir, "-go-package", "xdpprog", "steer", "bpf/steer.c")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("bpf2go: %v\n%s", err, out)
	}
	for _, f := range []string{"steer_bpfel.o", "steer_bpfel.go"} {
		want, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run `go generate ./internal/xdpprog` and commit the result", f)
		}
	}
}
