package main

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
)

var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xskgate-bin")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "xskgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestBadInput: each mistake is one line naming the problem, exit code 1
// or 2, and nothing is left behind.
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("outer: a\ninner: b\nrings:\n  rx: 1000\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"config", "check", bad}, "bad.yaml:4: rings.rx: 1000 is not a power of two"},
		{[]string{"config", "check", filepath.Join(dir, "missing.yaml")}, "missing.yaml"},
		{[]string{"run", "--outer", "x", "--inner", "x", "--control", filepath.Join(dir, "c.sock")}, "also the outer interface"},
		{[]string{"run", "--cpus", "a"}, `--cpus "a"`},
		{[]string{"stats", "--control", filepath.Join(dir, "none.sock")}, "no xskgate daemon"},
		{[]string{"bench", "--gen", "frob"}, `unknown generator "frob"`},
		{[]string{"bench", "--only", "nope"}, `unknown path "nope"`},
		{[]string{"bench", "--legit-floods", "udp"}, `unknown flood "udp"`},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		if err == nil {
			t.Errorf("%v: succeeded", tc.args)
		}
		if !strings.Contains(string(out), tc.want) {
			t.Errorf("%v: output %q, want %q", tc.args, out, tc.want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("the rest needs root: run the tests as root")
	}
	out, _ := exec.Command(bin, "run", "--outer", "nosuch0", "--inner", "nosuch1", "--control", filepath.Join(dir, "c.sock"), "--metrics", "").CombinedOutput()
	if !strings.Contains(string(out), `outer interface "nosuch0" not found`) {
		t.Errorf("missing interface: %q", out)
	}
}

// TestDaemonLifecycle runs the daemon in a lab under TCP load, checks a
// second daemon is refused, sends SIGTERM under load, and checks it exits
// cleanly with its frames accounted for and no XDP program left.
func TestDaemonLifecycle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	d, lines := startDaemon(t, l, "--control", sock, "--metrics", "")

	out, err := exec.Command("ip", "netns", "exec", l.GateNS, bin, "run", "--outer", "outer", "--inner", "inner", "--control", sock, "--metrics", "").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another xskgate is running") {
		t.Fatalf("second daemon: %v %q", err, out)
	}

	serveTraffic(t, l)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Load: connections that run past the signal.
	for i := 0; i < 4; i++ {
		go func() {
			for seed := uint64(i); ctx.Err() == nil; seed += 4 {
				c, err := dialServer(ctx, l)
				if err != nil {
					continue
				}
				traffic.Exchange(ctx, c, seed, 8<<20, 8<<20)
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if out, err := exec.Command(bin, "stats", "--control", sock).CombinedOutput(); err != nil || !strings.Contains(string(out), "frames:") {
		t.Fatalf("stats: %v %q", err, out)
	}
	d.Process.Signal(syscall.SIGTERM)
	stopped := waitFor(t, lines, "msg=stopped")
	if err := d.Wait(); err != nil {
		t.Fatalf("daemon exit: %v", err)
	}
	// frames_total=8192 free=… fill=… tx=0 quarantined=0, and they add up.
	var total, free, fill, tx, quar int
	for _, f := range strings.Fields(stopped) {
		k, v, _ := strings.Cut(f, "=")
		n := atoi(v)
		switch k {
		case "frames_total":
			total = n
		case "free":
			free = n
		case "fill":
			fill = n
		case "tx":
			tx = n
		case "quarantined":
			quar = n
		}
	}
	if total == 0 || free+fill+tx+quar != total || tx != 0 {
		t.Fatalf("accounting after SIGTERM under load: %q", stopped)
	}
	err = l.Do(l.GateNS, func() error {
		for _, name := range []string{lab.OuterName, lab.InnerName} {
			ln, err := netlink.LinkByName(name)
			if err != nil {
				return err
			}
			if x := ln.Attrs().Xdp; x != nil && x.Attached {
				t.Errorf("%s still has an XDP program after SIGTERM", name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("control socket left behind: %v", err)
	}
}

// startDaemon runs `xskgate run` in the lab's gate namespace with args and
// streams its log lines; the process is killed at cleanup if still alive.
func startDaemon(t *testing.T, l *lab.Lab, args ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	d := exec.Command("ip", append([]string{"netns", "exec", l.GateNS, bin, "run", "--outer", "outer", "--inner", "inner"}, args...)...)
	stderr, err := d.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	lines := make(chan string, 10000)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default: // a test that stopped reading must not block the daemon
			}
		}
	}()
	waitFor(t, lines, "msg=running")
	return d, lines
}

// serveTraffic runs a verifying traffic server on the lab server's IPv4
// address, port 5201, until the test ends.
func serveTraffic(t *testing.T, l *lab.Lab) {
	t.Helper()
	var srv *traffic.Server
	if err := l.Do(l.ServerNS, func() error {
		ln, err := net.Listen("tcp4", netip.AddrPortFrom(l.ServerIP4, 5201).String())
		if err != nil {
			return err
		}
		srv = traffic.Serve(ln)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
}

// dialServer connects from the client namespace to serveTraffic's server.
func dialServer(ctx context.Context, l *lab.Lab) (net.Conn, error) {
	var c net.Conn
	err := l.Do(l.ClientNS, func() error {
		var err error
		c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp4", netip.AddrPortFrom(l.ServerIP4, 5201).String())
		return err
	})
	return c, err
}

func waitFor(t *testing.T, lines <-chan string, substr string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("daemon exited before %q", substr)
			}
			if strings.Contains(l, substr) {
				return l
			}
		case <-timeout:
			t.Fatalf("no %q from the daemon", substr)
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return n
		}
		n = n*10 + int(c-'0')
	}
	return n
}
