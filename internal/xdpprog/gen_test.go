package xdpprog

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestObjectsCurrent rebuilds the XDP program from bpf/steer.c and the
// fast path's tc program from bpf/fastpath.c with the commands of gen.go and compares it with the committed object and
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
	// As gen.go's go:generate lines.
	for _, obj := range []struct {
		ident, src string
		types      []string
	}{{"steer", "bpf/steer.c", []string{"config", "scope"}}, {"fast", "bpf/fastpath.c", []string{"fastval", "counters"}}} {
		dir := t.TempDir()
		args := []string{"run", "github.com/cilium/ebpf/cmd/bpf2go", "-cc", "clang",
			"-cflags", "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu", "-target", "bpfel"}
		for _, ty := range obj.types {
			args = append(args, "-type", ty)
		}
		args = append(args, "-output-dir", dir, "-go-package", "xdpprog", obj.ident, obj.src)
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			t.Fatalf("bpf2go: %v\n%s", err, out)
		}
		for _, f := range []string{obj.ident + "_bpfel.o", obj.ident + "_bpfel.go"} {
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
}
