package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestGoInstall: `go install github.com/xskgate/xskgate/cmd/xskgate@VERSION`
// works for a user (no replace directive, the main package builds from
// the module zip alone, committed XDP objects included, no cgo), and the
// installed binary's `xskgate version` names that version. The module is
// served from a file:// proxy holding HEAD as git archive makes it (the
// module zip layout); its dependencies come from this machine's module
// download cache (a valid GOPROXY tree), so nothing is fetched.
func TestGoInstall(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: installing compiles the whole module (about a minute the first time)")
	}
	top, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Skipf("not in a git checkout (git rev-parse: %v): the module zip is made from HEAD", err)
	}
	root := strings.TrimSpace(string(top))
	gomodcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	const module, version = "github.com/xskgate/xskgate", "v0.99.0-installtest"
	dir := t.TempDir()
	at := filepath.Join(dir, "proxy", module, "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		t.Fatal(err)
	}
	zip := filepath.Join(at, version+".zip")
	if out, err := exec.Command("git", "-C", root, "archive", "--format=zip", "--prefix="+module+"@"+version+"/", "-o", zip, "HEAD").CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, out)
	}
	gomod, err := exec.Command("git", "-C", root, "show", "HEAD:go.mod").Output()
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"list":            version + "\n",
		version + ".mod":  string(gomod),
		version + ".info": `{"Version":"` + version + `","Time":"` + time.Now().UTC().Format(time.RFC3339) + `"}`,
	} {
		if err := os.WriteFile(filepath.Join(at, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gobin := filepath.Join(dir, "bin")
	cmd := exec.Command("go", "install", "-trimpath", module+"/cmd/xskgate@"+version)
	cmd.Dir = dir // outside any module, as a user's shell would be
	cmd.Env = append(os.Environ(),
		"GOBIN="+gobin,
		"GOMODCACHE="+filepath.Join(dir, "modcache"),
		"GOPROXY=file://"+filepath.Join(dir, "proxy")+",file://"+filepath.Join(strings.TrimSpace(string(gomodcache)), "cache", "download"),
		// The dependencies come from the download cache, verified against
		// go.sum when the repository's own build fetched them; the test
		// module is in no checksum database.
		"GOSUMDB=off", "GOFLAGS=-modcacherw", "GOTOOLCHAIN=local", "CGO_ENABLED=0",
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s/cmd/xskgate@%s: %v\n%s", module, version, err, out)
	}
	out, err := exec.Command(filepath.Join(gobin, "xskgate"), "version").CombinedOutput()
	if err != nil {
		t.Fatalf("installed xskgate version: %v\n%s", err, out)
	}
	for _, want := range []string{"xskgate " + version + "\n", "module:   " + module, "go:       " + runtime.Version(), "kernel features:"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("installed xskgate version lacks %q:\n%s", want, out)
		}
	}
}

// TestVersion: `xskgate version` names the module, the Go version and the
// kernel features; when the build recorded a commit, it is HEAD's.
func TestVersion(t *testing.T) {
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("version: %v\n%s", err, out)
	}
	s := string(out)
	for _, want := range []string{"xskgate ", "module:   github.com/xskgate/xskgate", "go:       " + runtime.Version(),
		"kernel features:", "AF_XDP zero-copy: per interface", "XDP record carrier: ", "XDP_UMEM_TX_METADATA_LEN", "XDP_MAX_TX_SKB_BUDGET"} {
		if !strings.Contains(s, want) {
			t.Errorf("version lacks %q:\n%s", want, s)
		}
	}
	if os.Geteuid() == 0 {
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, "unknown") {
				t.Errorf("as root every probe answers: %q", l)
			}
		}
	}
	head, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if i := strings.Index(s, "commit:   "); err == nil && i >= 0 && !strings.HasPrefix(s[i:], "commit:   not recorded") {
		if !strings.HasPrefix(s[i+len("commit:   "):], strings.TrimSpace(string(head))) {
			t.Errorf("commit line %q is not HEAD %s", strings.SplitN(s[i:], "\n", 2)[0], head)
		}
	}
}
