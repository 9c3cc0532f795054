package deploy_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// verifyUnit runs systemd-analyze verify on unit with the xskgate binary
// at /usr/local/bin or /usr/bin replaced by bin (verify checks that the
// commands exist), and fails on any complaint, warnings included.
func verifyUnit(t *testing.T, unit, bin string) {
	t.Helper()
	analyze := lookTool(t, "systemd-analyze", "systemd")
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	s := regexp.MustCompile(`/usr(/local)?/bin/xskgate`).ReplaceAllString(string(b), bin)
	file := filepath.Join(t.TempDir(), "xskgate.service")
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", file).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "xskgate")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/xskgate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestServiceUnit: systemd accepts deploy/xskgate.service (directives,
// sandboxing, capabilities, commands).
func TestServiceUnit(t *testing.T) {
	lookTool(t, "systemd-analyze", "systemd")
	verifyUnit(t, "xskgate.service", buildBinary(t))
}

// TestDeb: deploy/mkdeb builds a package with the binary, the unit, the
// configuration as a conffile, the state directory 0700 and the
// monitoring files; what it installs runs, checks its own configuration,
// and systemd accepts its unit.
func TestDeb(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the binary and a package")
	}
	dpkg := lookTool(t, "dpkg-deb", "dpkg")
	out := t.TempDir()
	b, err := exec.Command("bash", "mkdeb", out, "1.2.3~test").CombinedOutput()
	if err != nil {
		t.Fatalf("mkdeb: %v\n%s", err, b)
	}
	deb := strings.TrimSpace(string(b))
	if filepath.Dir(deb) != out || !strings.HasPrefix(filepath.Base(deb), "xskgate_1.2.3~test_") {
		t.Fatalf("mkdeb printed %q", deb)
	}
	fields, err := exec.Command(dpkg, "-f", deb, "Package", "Version").Output()
	if err != nil || string(fields) != "Package: xskgate\nVersion: 1.2.3~test\n" {
		t.Errorf("control fields: %v %q", err, fields)
	}
	list, err := exec.Command(dpkg, "-c", deb).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`-rwxr-xr-x root/root .* \./usr/bin/xskgate`,
		`-rw-r--r-- root/root .* \./lib/systemd/system/xskgate\.service`,
		`-rw-r--r-- root/root .* \./etc/xskgate/xskgate\.yaml`,
		`drwx------ root/root .* \./var/lib/xskgate/`,
		`\./usr/share/xskgate/xskgate-rules\.yml`, `\./usr/share/xskgate/xskgate\.json`,
		`drwxr-xr-x root/root .* \./\n`,
	} {
		if !regexp.MustCompile(want).Match(list) {
			t.Errorf("the package lacks %s:\n%s", want, list)
		}
	}
	ctl := t.TempDir()
	if b, err := exec.Command(dpkg, "-e", deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v %s", err, b)
	}
	if c, _ := os.ReadFile(filepath.Join(ctl, "conffiles")); string(c) != "/etc/xskgate/xskgate.yaml\n" {
		t.Errorf("conffiles %q", c)
	}
	root := t.TempDir()
	if b, err := exec.Command(dpkg, "-x", deb, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v %s", err, b)
	}
	bin := filepath.Join(root, "usr/bin/xskgate")
	if b, err := exec.Command(bin, "config", "check", filepath.Join(root, "etc/xskgate/xskgate.yaml")).CombinedOutput(); err != nil {
		t.Errorf("the packaged binary refuses the packaged configuration: %v\n%s", err, b)
	}
	unit := filepath.Join(root, "lib/systemd/system/xskgate.service")
	if u, _ := os.ReadFile(unit); !strings.Contains(string(u), "ExecStart=/usr/bin/xskgate run --config /etc/xskgate/xskgate.yaml") {
		t.Errorf("the packaged unit does not start /usr/bin/xskgate:\n%s", u)
	}
	verifyUnit(t, unit, bin)
}
