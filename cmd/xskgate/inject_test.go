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

// TestInjectedBugCaught plants the FILL-while-on-TX user bug in the real
// daemon (--inject) under verified TCP traffic and checks: the violation is
// reported, the pcapng capture opens in tshark with the comment, the
// flight-recorder dump holds the frame's history, forwarding continued
// (every byte verified), and the accounting is intact at SIGTERM.
func TestInjectedBugCaught(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	dir := t.TempDir()
	dumps := filepath.Join(dir, "evidence")
	sock := filepath.Join(dir, "ctl.sock")
	conf := filepath.Join(dir, "xskgate.yaml")
	os.WriteFile(conf, []byte("integrity:\n  dump_dir: "+dumps+"\nmetrics:\n  listen: \"\"\ncontrol:\n  socket: "+sock+"\n"), 0o600)
	d, lines := startDaemon(t, l, "--config", conf, "--inject", "0.05")

	serveTraffic(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for i := uint64(0); i < 4; i++ {
		c, err := dialServer(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		if res := traffic.Exchange(ctx, c, i, 4<<20, 4<<20); res.Err != nil {
			t.Fatalf("connection %d through the gate with the bug planted: %v", i, res.Err)
		}
	}

	out, err := exec.Command(bin, "violations", "--control", sock).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fill_while_tx") {
		t.Fatalf("violations: %v\n%s", err, out)
	}
	t.Logf("xskgate violations:\n%s", out)
	if !strings.Contains(string(out), "evidence: ") || !strings.Contains(string(out), "not captured: ") {
		t.Fatalf("violations does not report the evidence limits:\n%s", out)
	}
	// top reads the counts from its one "stats" call.
	if out, err := exec.Command(bin, "top", "--control", sock, "--once", "--interval", "100ms").CombinedOutput(); err != nil ||
		!regexp.MustCompile(`INTEGRITY VIOLATIONS: .*fill_while_tx [1-9]`).Match(out) {
		t.Fatalf("top --once does not show the violations: %v\n%s", err, out)
	}
	var capture, dump string
	for _, ln := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(ln, "pcapng capture: "); ok {
			capture = v
		}
		if v, ok := strings.CutPrefix(ln, "flight recorder dump: "); ok && dump == "" {
			dump = v
		}
	}
	if capture == "" || dump == "" {
		t.Fatalf("no evidence files in:\n%s", out)
	}
	for _, f := range []string{capture, dump} {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v mode %v, want 0600", f, err, st.Mode())
		}
	}
	// The dump holds the history of the frame named by the first violation.
	first := ""
	for _, ln := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(ln, "fill_while_tx:") {
			first = ln
			break
		}
	}
	_, rest, _ := strings.Cut(first, "addr=")
	addr, _, _ := strings.Cut(rest, " ")
	body, _ := os.ReadFile(dump)
	if addr == "" || !strings.Contains(string(body), addr[2:]) {
		t.Fatalf("dump %s has no event for %s", dump, addr)
	}
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Logf("tshark not installed: pcapng checked only by name (apt-get install tshark)")
	} else {
		tsh, err := exec.Command("tshark", "-r", capture, "-T", "fields", "-e", "frame.comment").CombinedOutput()
		if err != nil || !strings.Contains(string(tsh), "violation=fill_while_tx") {
			t.Fatalf("tshark -r %s: %v\n%s", capture, err, tsh)
		}
		for _, ln := range strings.Split(string(tsh), "\n") {
			if strings.Contains(ln, "violation=") {
				t.Logf("tshark shows the comment: %s", ln)
				break
			}
		}
	}

	d.Process.Signal(syscall.SIGTERM)
	stopped := waitFor(t, lines, "msg=stopped")
	if err := d.Wait(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	if !strings.Contains(stopped, "tx=0") {
		t.Fatalf("frames still on TX at exit: %s", stopped)
	}
	var total, sum int
	for _, f := range strings.Fields(stopped) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "frames_total":
			total = atoi(v)
		case "free", "fill", "tx", "quarantined":
			sum += atoi(v)
		}
	}
	if total == 0 || sum != total {
		t.Fatalf("accounting after the planted bug: %s", stopped)
	}
}
