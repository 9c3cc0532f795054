package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
)

const protectedConf = `protection:
  enabled: true
  prefixes: [198.18.0.0/24, "2001:2::/64"]
  rules:
    - scope: 198.18.0.0/24
      mode: %MODE%
      syn_flood: {rate: 5000, action: challenge}
`

// TestReloadUnderTraffic: the daemon runs with the TCP protection in
// mitigate mode; while verified connections run, the config flips between
// mitigate and monitor and is reloaded with SIGHUP and with `xskgate
// reload`. No connection may fail (no flow lost), `xskgate flows` lists the
// live connections, and every reload is logged.
func TestReloadUnderTraffic(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl.sock")
	conf := filepath.Join(dir, "xskgate.yaml")
	write := func(mode string) {
		os.WriteFile(conf, []byte(strings.ReplaceAll(protectedConf, "%MODE%", mode)+"metrics:\n  listen: \"\"\ncontrol:\n  socket: "+sock+"\n"), 0o600)
	}
	write("mitigate")
	d, lines := startDaemon(t, l, "--config", conf)

	serveTraffic(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	// Long connections that live across every reload.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := uint64(0); i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := dialServer(ctx, l)
			if err != nil {
				errs <- err
				return
			}
			if res := traffic.Exchange(ctx, c, i, 48<<20, 48<<20); res.Err != nil {
				errs <- res.Err
			}
		}()
	}
	// Wait for the four connections to show as established (each dials
	// in its own goroutine: no fixed delay can promise that).
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		out, err = exec.Command(bin, "flows", "--control", sock, "--state", "established").CombinedOutput()
		if err == nil && strings.Count(string(out), "198.18.0.2:5201") >= 4 && strings.Contains(string(out), "established") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flows after 10 s: %v\n%s", err, out)
		}
	}
	t.Logf("xskgate flows:\n%s", out)
	for k, mode := range []string{"monitor", "mitigate", "monitor", "mitigate"} {
		write(mode)
		if k%2 == 0 {
			d.Process.Signal(syscall.SIGHUP)
		} else if out, err := exec.Command(bin, "reload", "--control", sock).CombinedOutput(); err != nil {
			t.Fatalf("reload: %v %s", err, out)
		}
		waitFor(t, lines, "configuration reloaded")
		time.Sleep(200 * time.Millisecond)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a connection failed across the reloads: %v", err)
	}
	d.Process.Signal(syscall.SIGTERM)
	waitFor(t, lines, "msg=stopped")
	d.Wait()
}
