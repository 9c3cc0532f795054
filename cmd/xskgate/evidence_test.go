package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
)

// TestEvidenceLimitsInDaemon plants the FILL-while-on-TX bug in the daemon
// under TCP load with tight evidence limits: the violations keep coming,
// but the dump directory never holds more than evidence_max_bytes, each
// class captures only its burst and rate, and `xskgate violations` counts
// what was not written; the cap is logged once.
func TestEvidenceLimitsInDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	dir := t.TempDir()
	dumps := filepath.Join(dir, "evidence")
	sock := filepath.Join(dir, "ctl.sock")
	conf := filepath.Join(dir, "xskgate.yaml")
	os.WriteFile(conf, []byte("integrity:\n  dump_dir: "+dumps+"\n  evidence_max_bytes: 64KiB\n  capture_rate: 1\n  capture_burst: 3\n"+
		"metrics:\n  listen: \"\"\ncontrol:\n  socket: "+sock+"\n"), 0o600)
	d, lines := startDaemon(t, l, "--config", conf, "--inject", "0.05")
	serveTraffic(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	for i := uint64(0); i < 4; i++ {
		c, err := dialServer(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if res := traffic.Exchange(ctx, c, i, 4<<20, 4<<20); res.Err != nil {
			t.Fatalf("connection %d: %v", i, res.Err)
		}
	}
	out, err := exec.Command(bin, "violations", "--control", sock).CombinedOutput()
	if err != nil {
		t.Fatalf("violations: %v\n%s", err, out)
	}
	secs := int(time.Since(start)/time.Second) + 2
	t.Logf("xskgate violations (first lines elided):\n%s", tailLines(string(out), 6))

	m := regexp.MustCompile(`(?m)^fill_while_tx\s+(\d+)$`).FindStringSubmatch(string(out))
	if m == nil || atoi(m[1]) < 10 {
		t.Fatalf("want a storm of fill_while_tx violations:\n%s", out)
	}
	n := atoi(m[1])
	if !strings.Contains(string(out), "(cap reached: what does not fit is not written") {
		t.Fatalf("cap not reported as reached:\n%s", out)
	}
	rm := regexp.MustCompile(`not captured: (\d+) frames over the capture rate \(fill_while_tx (\d+)\), (\d+) at the cap`).FindStringSubmatch(string(out))
	if rm == nil {
		t.Fatalf("no count of frames not captured:\n%s", out)
	}
	rate, capped := atoi(rm[1]), atoi(rm[3])
	captured := n - rate - capped
	if captured < 1 || captured > 3+secs {
		t.Fatalf("%d violations, %d over the rate, %d at the cap: %d captured, want 1..%d (burst 3, 1/s for %ds)", n, rate, capped, captured, 3+secs, secs)
	}
	var total int64
	ents, _ := os.ReadDir(dumps)
	for _, e := range ents {
		if fi, err := e.Info(); err == nil {
			total += fi.Size()
		}
	}
	if total > 64<<10 {
		t.Fatalf("dump directory holds %d bytes, cap 64KiB", total)
	}
	d.Process.Signal(syscall.SIGTERM)
	var logged int
	for ln := range lines {
		if strings.Contains(ln, "integrity evidence cap reached") {
			logged++
		}
	}
	d.Wait()
	if logged > 1 {
		t.Fatalf("cap logged %d times after the call, want at most once in all", logged)
	}
	t.Logf("%d violations, %d frames captured, %d over the rate, %d at the cap; %d bytes of evidence", n, captured, rate, capped, total)
}

func tailLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
