package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestConfigCheckShipped runs `xskgate config check` on the file users
// copy, deploy/xskgate.yaml, as an operator (and CI) would.
func TestConfigCheckShipped(t *testing.T) {
	out, err := exec.Command(bin, "config", "check", "../../deploy/xskgate.yaml").CombinedOutput()
	if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "deploy/xskgate.yaml: ok") {
		t.Fatalf("config check deploy/xskgate.yaml: %v\n%s", err, out)
	}
	if strings.Contains(string(out), "warning") {
		t.Errorf("the shipped file draws a warning:\n%s", out)
	}
}
