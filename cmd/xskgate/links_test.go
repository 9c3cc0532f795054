package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
)

// TestDaemonExitsOnLinkRemoval deletes the inner interface under a running
// daemon with TCP in flight: the daemon exits non-zero with one line naming
// the interface and what changed, after a teardown that detaches outer's
// program and reports balanced frame accounting, so that systemd
// (Restart=on-failure) restarts it.
func TestDaemonExitsOnLinkRemoval(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	d, lines := startDaemon(t, l, "--control", sock, "--metrics", "")
	serveTraffic(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := dialServer(ctx, l)
	if err != nil {
		t.Fatal(err)
	}
	if res := traffic.Exchange(ctx, c, 1, 1<<20, 1<<20); res.Err != nil {
		t.Fatalf("TCP through the daemon before the removal: %v", res.Err)
	}
	// Connections in flight when the interface goes.
	for i := range 2 {
		go func() {
			if c, err := dialServer(ctx, l); err == nil {
				traffic.Exchange(ctx, c, uint64(10+i), 64<<20, 64<<20)
			}
		}()
	}
	if err := l.Do(l.GateNS, func() error {
		ln, err := netlink.LinkByName(lab.InnerName)
		if err != nil {
			return err
		}
		return netlink.LinkDel(ln)
	}); err != nil {
		t.Fatal(err)
	}

	exited := make(chan error, 1)
	go func() { exited <- d.Wait() }()
	var log []string
	timeout := time.After(15 * time.Second)
	for done := false; !done; {
		select {
		case ln, ok := <-lines:
			if !ok {
				done = true
				break
			}
			log = append(log, ln)
		case <-timeout:
			t.Fatalf("the daemon did not exit after inner was deleted:\n%s", strings.Join(log, "\n"))
		}
	}
	err = <-exited
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("daemon exit %v, want a non-zero status:\n%s", err, strings.Join(log, "\n"))
	}
	const want = "xskgate run: inner interface inner: removed from the gate's network namespace (deleted, or moved to another namespace)"
	var last, stopped string
	for _, ln := range log {
		if strings.HasPrefix(ln, "xskgate run: ") {
			last = ln
		}
		if strings.Contains(ln, "msg=stopped") {
			stopped = ln
		}
		if strings.Contains(ln, "drain timed out") {
			t.Errorf("drain waited for the deleted interface: %s", ln)
		}
	}
	if !strings.HasPrefix(last, want) {
		t.Fatalf("last error line %q, want %q:\n%s", last, want, strings.Join(log, "\n"))
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
		t.Fatalf("no balanced accounting at exit: %q", stopped)
	}
	t.Logf("exit status %d; %s; %s", ee.ExitCode(), last, stopped)
	if err := l.Do(l.GateNS, func() error {
		ln, err := netlink.LinkByName(lab.OuterName)
		if err != nil {
			return err
		}
		if x := ln.Attrs().Xdp; x != nil && x.Attached {
			t.Errorf("outer still has an XDP program after the daemon exited")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
