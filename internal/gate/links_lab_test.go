package gate_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
)

// logBuffer collects a gate's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// openWatched opens and starts a gate with every check on, logging to the
// returned buffer; Close is the test's cleanup.
func openWatched(t *testing.T, l *lab.Lab) (*gate.Gate, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	ic := integrity.DefaultConfig()
	var g *gate.Gate
	if err := l.Do(l.GateNS, func() error {
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Integrity: &ic,
			Logger: slog.New(slog.NewTextHandler(logs, nil))})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	g.Start()
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("gate close: %v", err)
		}
	})
	return g, logs
}

// waitUntil polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setLink sets ifname in namespace ns up or down.
func setLink(t *testing.T, l *lab.Lab, ns, ifname string, up bool) {
	t.Helper()
	if err := l.Do(ns, func() error {
		ln, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if up {
			return netlink.LinkSetUp(ln)
		}
		return netlink.LinkSetDown(ln)
	}); err != nil {
		t.Fatal(err)
	}
}

// exchange runs one verified TCP exchange (SHA-256 both ways) from the
// client to the server through the gate, retrying the connection until
// the deadline: after a link comes back the first SYN may find it still
// settling.
func exchange(t *testing.T, l *lab.Lab, seed uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var last error
	for ctx.Err() == nil {
		var c net.Conn
		err := l.Do(l.ClientNS, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", netip.AddrPortFrom(l.ServerIP4, port).String())
			return err
		})
		if err != nil {
			last = err
			continue
		}
		if res := traffic.Exchange(ctx, c, seed, 256<<10, 256<<10); res.Err != nil {
			t.Fatalf("TCP exchange through the gate: %v", res.Err)
		}
		return
	}
	t.Fatalf("no TCP connection through the gate: %v", last)
}

// inner sums the gate's inner ports' counters.
func inner(g *gate.Gate) (tx, linkDown uint64) {
	for _, w := range g.Stats() {
		for _, p := range w.Ports {
			if p.Side == "inner" {
				tx += p.TxPackets
				linkDown += p.Drops["link_down"]
			}
		}
	}
	return tx, linkDown
}

// TestLinkDownUp takes the inner link down twice, administratively (the
// gate's end) and by carrier (the server's end): each time the gate says
// so, posts nothing to inner's TX, drops and counts what was for it; once
// up, a verified TCP exchange goes through again.
func TestLinkDownUp(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	g, logs := openWatched(t, l)
	if err := l.Do(l.ServerNS, func() error {
		ln, err := net.Listen("tcp4", netip.AddrPortFrom(l.ServerIP4, port).String())
		if err != nil {
			return err
		}
		s := traffic.Serve(ln)
		t.Cleanup(func() { s.Close() })
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	exchange(t, l, 1)

	for k, how := range []struct {
		name, ns, ifname string
	}{
		{"inner set down", l.GateNS, lab.InnerName},
		{"server's end set down (carrier lost)", l.ServerNS, lab.HostIfName},
	} {
		setLink(t, l, how.ns, how.ifname, false)
		waitUntil(t, 5*time.Second, how.name+": the gate sees inner down", func() bool { return !g.Links()[1].Up })
		tx0, drop0 := inner(g)
		const n = 200
		if err := l.Do(l.ClientNS, func() error {
			u, err := net.Dial("udp4", netip.AddrPortFrom(l.ServerIP4, 9).String())
			if err != nil {
				return err
			}
			defer u.Close()
			for range n {
				if _, err := u.Write([]byte("for a link that is down")); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 5*time.Second, fmt.Sprintf("%s: %d datagrams dropped as link_down", how.name, n), func() bool {
			_, d := inner(g)
			return d-drop0 >= n
		})
		tx, drop := inner(g)
		if tx != tx0 {
			t.Fatalf("%s: %d frames posted to inner's TX while it was down", how.name, tx-tx0)
		}
		t.Logf("%s: %d frames for inner dropped as link_down, none posted to its TX", how.name, drop-drop0)
		if st := g.Links()[1]; st.Downs != uint64(k+1) || st.Iface != lab.InnerName {
			t.Fatalf("%s: link status %+v, want %d downs", how.name, st, k+1)
		}
		if a := g.Engine.Accounting(); !a.Balanced() {
			t.Fatalf("%s: accounting %+v", how.name, a)
		}

		setLink(t, l, how.ns, how.ifname, true)
		waitUntil(t, 5*time.Second, how.name+": the gate sees inner up", func() bool { return g.Links()[1].Up })
		exchange(t, l, uint64(10+k))
		if tx, _ := inner(g); tx == tx0 {
			t.Fatalf("%s: nothing posted to inner's TX after it came back", how.name)
		}
	}
	out := logs.String()
	for _, ln := range strings.Split(out, "\n") {
		if strings.Contains(ln, "link down") || strings.Contains(ln, "link up") {
			t.Log(ln)
		}
	}
	if strings.Count(out, "link down: frames for it are dropped") != 2 || strings.Count(out, "link up: forwarding to it resumes") != 2 {
		t.Fatalf("want two down and two up lines in the log:\n%s", out)
	}
	if g.Err() != nil {
		t.Fatalf("a link that went down and up failed the gate: %v", g.Err())
	}
}

// TestLinkChangeFails changes the inner interface under a running gate in
// each way it cannot follow (deleted, moved to another namespace, renamed,
// MTU changed): Failed is closed with one line naming the interface and the
// change, and Close tears down cleanly (outer's program detached, frames
// accounted for) without waiting for frames stranded on inner's TX.
func TestLinkChangeFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(l *lab.Lab, ln netlink.Link) error
		want   string
	}{
		{"deleted", func(_ *lab.Lab, ln netlink.Link) error { return netlink.LinkDel(ln) },
			"inner interface inner: removed from the gate's network namespace"},
		{"moved", func(l *lab.Lab, ln netlink.Link) error {
			ns, err := netns.GetFromName(l.ClientNS)
			if err != nil {
				return err
			}
			defer ns.Close()
			return netlink.LinkSetNsFd(ln, int(ns))
		}, "inner interface inner: removed from the gate's network namespace (deleted, or moved to another namespace)"},
		{"renamed", func(_ *lab.Lab, ln netlink.Link) error {
			if err := netlink.LinkSetDown(ln); err != nil {
				return err
			}
			return netlink.LinkSetName(ln, "wan0")
		}, `inner interface inner: renamed to "wan0"`},
		{"mtu", func(_ *lab.Lab, ln netlink.Link) error { return netlink.LinkSetMTU(ln, 1400) },
			"inner interface inner: MTU changed from 1500 to 1400"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			linkChangeFails(t, tc.change, tc.want)
		})
	}
}

func linkChangeFails(t *testing.T, change func(*lab.Lab, netlink.Link) error, want string) {
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	logs := &logBuffer{}
	ic := integrity.DefaultConfig()
	var g *gate.Gate
	if err := l.Do(l.GateNS, func() error {
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Integrity: &ic,
			Drain: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	g.Start()
	closed := false
	t.Cleanup(func() {
		if !closed {
			g.Close()
		}
	})
	if err := l.Do(l.GateNS, func() error {
		ln, err := netlink.LinkByName(lab.InnerName)
		if err != nil {
			return err
		}
		return change(l, ln)
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.Failed():
	case <-time.After(5 * time.Second):
		t.Fatalf("the gate did not notice:\n%s", logs.String())
	}
	err := g.Err()
	if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Err() = %v, want one line with %q", err, want)
	}
	start := time.Now()
	closed = true
	if err := g.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("close took %v: it waited for inner's TX", d)
	}
	if a := g.Engine.Accounting(); !a.Balanced() {
		t.Fatalf("accounting %+v", a)
	}
	// Nothing attached, wherever the interfaces are now.
	for _, ns := range []string{l.GateNS, l.ClientNS} {
		if err := l.Do(ns, func() error {
			for _, name := range []string{lab.OuterName, lab.InnerName, "wan0"} {
				ln, err := netlink.LinkByName(name)
				if err != nil {
					continue // not in this namespace
				}
				if x := ln.Attrs().Xdp; x != nil && x.Attached {
					t.Errorf("%s in %s still has an XDP program after the gate closed", name, ns)
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	// slog's text handler escapes the quotes in the message.
	if !strings.Contains(strings.ReplaceAll(logs.String(), `\"`, `"`), want) {
		t.Fatalf("change not logged:\n%s", logs.String())
	}
}
