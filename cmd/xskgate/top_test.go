package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/control"
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/traffic"
)

// TestTopRender: rates are the difference between two readings over the
// time between them; a counter that went down reads 0; a worker whose
// heartbeat stood still is called stuck; violations show with their growth.
func TestTopRender(t *testing.T) {
	at := time.Unix(1000, 0)
	port := func(side string, rx, rxBytes, drops uint64) gate.PortSnapshot {
		return gate.PortSnapshot{Side: side, Iface: side, Queue: 0, RxPackets: rx, RxBytes: rxBytes, TxPackets: rx,
			Verdicts: map[string]uint64{"forward": rx}, Drops: map[string]uint64{"tx_ring_full": drops},
			Rings: gate.RingLevels{Fill: gate.RingLevel{Entries: 1000, Size: 2048}}}
	}
	sample := func(secs int, rx, iters uint64, viol uint64) topSample {
		s := topSample{at: at.Add(time.Duration(secs) * time.Second)}
		s.stats.Workers = []gate.WorkerSnapshot{{Worker: 0, Iterations: iters, Sleeps: iters,
			Frames: engine.Accounting{Total: 10, Free: 10},
			Ports:  []gate.PortSnapshot{port("outer", rx, rx*100, rx/10), port("inner", 7, 700, 0)}}}
		s.stats.Violations.Counts = map[string]uint64{"out_of_order": viol}
		return s
	}
	var b strings.Builder
	renderTop(&b, sample(0, 1000, 50, 0), sample(2, 5000, 50, 3))
	out := b.String()
	for _, want := range []string{
		"over 2.00s",
		"from outer: 2000 pkt/s, 1.6 Mbit/s", // (5000-1000)/2 s, 200 kB/s
		"drops/s by reason: tx_ring_full 200 (500 since start)", // (500-100)/2
		"1000/2048",
		"worker 0: 0 loops/s", "NO HEARTBEAT",
		"INTEGRITY VIOLATIONS: 3 (+3): out_of_order 3 (+3)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^ +0 +outer +2000 +1\.6 +2000 `).MatchString(out) {
		t.Errorf("outer queue 0 row should read 2000 pkt/s, 1.6 Mbit/s:\n%s", out)
	}
	b.Reset()
	renderTop(&b, sample(0, 5000, 50, 0), sample(1, 10, 90, 0)) // a restarted daemon
	if out := b.String(); !strings.Contains(out, "from outer: 0 pkt/s") || strings.Contains(out, "NO HEARTBEAT") ||
		!strings.Contains(out, "integrity violations: none") {
		t.Errorf("after a restart:\n%s", out)
	}
}

// TestTopOneCall: a reading of top is one "stats" round trip, the
// violation counts included; top no longer asks "violations" as well.
func TestTopOneCall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the control socket admits root only")
	}
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	srv, err := control.Listen(sock, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var calls atomic.Int32
	srv.Handle("stats", func(context.Context, json.RawMessage) (any, error) {
		calls.Add(1)
		return statsReply{Violations: violationsReply{Counts: map[string]uint64{"out_of_order": 2}, First: []string{"out_of_order: first"}}}, nil
	})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	s, err := sampleTop(ctx, sock)
	if err != nil {
		t.Fatalf("sampleTop: %v", err)
	}
	if n := calls.Load(); n != 1 || s.stats.Violations.Counts["out_of_order"] != 2 || len(s.stats.Violations.First) != 1 {
		t.Fatalf("%d stats calls, violations %+v; want one call carrying the counts", n, s.stats.Violations)
	}
}

// TestTop: against a running daemon forwarding TCP, `top --once` shows
// non-zero rates on the outer side, and `--count 2` prints two plain
// blocks (stdout is not a terminal here: no escape sequences).
func TestTop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	sock := filepath.Join(t.TempDir(), "ctl.sock")
	startDaemon(t, l, "--control", sock, "--metrics", "")
	serveTraffic(t, l)
	ctx, cancel := context.WithCancel(t.Context())
	done, flowing := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	// Traffic for as long as the test reads rates: connections one after
	// another, so there is always one in flight. The rates are read once a
	// first exchange went through the gate.
	go func() {
		defer close(done)
		first := true
		for seed := uint64(0); ctx.Err() == nil; seed++ {
			c, err := dialServer(ctx, l)
			if err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			if r := traffic.Exchange(ctx, c, seed, 4<<20, 4<<20); r.Err == nil && first {
				close(flowing)
				first = false
			}
		}
	}()
	select {
	case <-flowing:
	case <-time.After(30 * time.Second):
		t.Fatal("no TCP exchange through the gate in 30 s")
	}
	out, err := exec.Command(bin, "top", "--control", sock, "--once", "--interval", "1s").CombinedOutput()
	if err != nil {
		t.Fatalf("top --once: %v\n%s", err, out)
	}
	t.Logf("xskgate top --once:\n%s", out)
	var rx float64
	for _, m := range regexp.MustCompile(`(?m)^ +[01] +outer +(\d+) `).FindAllStringSubmatch(string(out), -1) {
		n, _ := strconv.ParseFloat(m[1], 64)
		rx += n
	}
	if rx == 0 {
		t.Errorf("no packets/s received on outer while TCP flows through the gate")
	}
	if !regexp.MustCompile(`from outer: [1-9]\d* pkt/s`).Match(out) || !regexp.MustCompile(`worker 0: [1-9]\d* loops/s`).Match(out) {
		t.Errorf("direction totals or heartbeat are zero")
	}
	out, err = exec.Command(bin, "top", "--control", sock, "--count", "2", "--interval", "200ms").CombinedOutput()
	if err != nil {
		t.Fatalf("top --count 2: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), "xskgate top "); n != 2 || strings.Contains(string(out), "\x1b[") {
		t.Errorf("want two plain blocks, got %d (escapes: %v):\n%s", n, strings.Contains(string(out), "\x1b["), out)
	}
	if out, err := exec.Command(bin, "top", "--control", sock, "--interval", "1ms").CombinedOutput(); err == nil ||
		!strings.Contains(string(out), "--interval 1ms is too short") {
		t.Errorf("--interval 1ms: %v %s", err, out)
	}
}
