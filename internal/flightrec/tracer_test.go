package flightrec

import (
	"bufio"
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	code := m.Run()
	// Tests must never leave an instance behind; remove any (ours only,
	// recognised by the test prefix) and fail loudly if one was found.
	if root, err := findTracefs(); err == nil {
		left, _ := filepath.Glob(filepath.Join(root, "instances", instancePrefix+"test-*"))
		for _, d := range left {
			fmt.Fprintf(os.Stderr, "flightrec: test left tracefs instance %s behind\n", d)
			os.Remove(d)
			code = 1
		}
	}
	os.Exit(code)
}

// openTestTracer opens a uniquely named tracer or skips the test.
func openTestTracer(t *testing.T) *Tracer {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("tracer tests need root")
	}
	if _, err := findTracefs(); err != nil {
		// A fresh machine may not have it mounted: mount it, as
		// `mount -t tracefs nodev /sys/kernel/tracing` would, so the
		// plain `go test` and CI run the same tests.
		if merr := unix.Mount("nodev", "/sys/kernel/tracing", "tracefs", 0, ""); merr != nil {
			t.Skipf("skipping: %v, and mounting tracefs failed: %v", err, merr)
		}
		if _, err := findTracefs(); err != nil {
			t.Skipf("skipping: %v", err)
		}
	}
	name := fmt.Sprintf("test-%d-%s", os.Getpid(), strings.ReplaceAll(t.Name(), "/", "_"))
	tr, err := OpenTracer(name)
	if err != nil {
		t.Fatalf("OpenTracer: %v", err)
	}
	t.Cleanup(func() {
		if err := tr.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if _, err := os.Stat(tr.Dir()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("instance %s still exists after Close (stat: %v)", tr.Dir(), err)
		}
	})
	return tr
}

func readCtl(t *testing.T, tr *Tracer, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tr.Dir(), name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestOpenTracerSetup(t *testing.T) {
	tr := openTestTracer(t)
	if got := readCtl(t, tr, "trace_clock"); !strings.Contains(got, "[mono]") {
		t.Errorf("trace_clock = %q, want [mono] selected", got)
	}
	if got := readCtl(t, tr, "tracing_on"); got != "1" {
		t.Errorf("tracing_on = %q, want 1", got)
	}
	if got := readCtl(t, tr, "events/ftrace/print/trigger"); !strings.Contains(got, freezeToken) {
		t.Errorf("trigger = %q, want the freeze trigger", got)
	}
	if _, err := os.Stat(filepath.Join(tr.Dir(), "events/xdp")); err == nil {
		if got := readCtl(t, tr, "events/xdp/enable"); got != "1" {
			t.Errorf("events/xdp/enable = %q, want 1", got)
		}
	}
}

func TestOpenTracerBadName(t *testing.T) {
	for _, name := range []string{"", "a/b", "x y", "a\nb", "ü"} {
		if _, err := OpenTracer(name); err == nil {
			t.Errorf("OpenTracer(%q) succeeded", name)
		}
	}
}

// TestTracerTriggerFreezesInKernel checks the mechanism Freeze relies on: the
// kernel trigger alone turns the buffer off on a marker with the token.
func TestTracerTriggerFreezesInKernel(t *testing.T) {
	tr := openTestTracer(t)
	tr.mu.Lock()
	err := tr.writeMarker([]byte("before " + freezeToken + " by trigger\n"))
	tr.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if got := readCtl(t, tr, "tracing_on"); got != "0" {
		t.Fatalf("tracing_on = %q after freeze marker, want 0 (trigger did not fire)", got)
	}
	tr.mu.Lock()
	err = tr.writeMarker([]byte("after freeze\n"))
	tr.mu.Unlock()
	if !errors.Is(err, syscall.EBADF) {
		t.Errorf("marker write after in-kernel freeze: %v, want EBADF", err)
	}
}

func TestTracerMarkFreezeSave(t *testing.T) {
	tr := openTestTracer(t)
	evs := []Event{
		{Time: Now(), Addr: 0x2000, Op: FillPost, Batch: 1},
		{Time: Now(), Addr: 0x2040, Len: 60, Op: RxRecv, Batch: 2, Aux: 7},
		{Time: Now(), Addr: 0x2040, Len: 60, Op: Violation, Batch: 2, Aux: 3},
	}
	for _, e := range evs {
		tr.Mark(e, "outer", 1)
	}
	marked := Now() // every marker was written between its event's time and now
	if err := tr.Freeze("rx_not_in_fill\naddr=0x2040"); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if err := tr.Freeze("again"); err != nil {
		t.Errorf("second Freeze: %v", err)
	}
	if !tr.Frozen() {
		t.Error("Frozen() = false after Freeze")
	}
	tr.Mark(Event{Time: Now(), Addr: 0xdead000, Op: TxPost}, "outer", 1)
	st := tr.Stats()
	if st.Marks != 4 || st.Errors != 0 || st.Suppressed != 1 {
		t.Errorf("Stats = %+v, want 4 marks (3 + freeze), 0 errors, 1 suppressed", st)
	}
	// Bypass the suppression: the kernel itself must refuse the marker.
	tr.mu.Lock()
	err := tr.writeMarker([]byte("xskgate after freeze\n"))
	tr.mu.Unlock()
	if !errors.Is(err, syscall.EBADF) {
		t.Errorf("raw marker write after Freeze: %v, want EBADF", err)
	}

	path := filepath.Join(t.TempDir(), "trace.txt")
	if err := tr.Save(path); err != nil {
		t.Fatalf("Save: %v", err)
	}
	if err := tr.Save(path); err == nil {
		t.Error("second Save to the same path succeeded, want O_EXCL failure")
	}
	// Under a byte budget: too small writes nothing; exactly the size
	// writes it all.
	full, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(t.TempDir(), "small.txt")
	if n, err := tr.SaveMax(small, full.Size()-1); !errors.Is(err, ErrTooLarge) || n != 0 {
		t.Errorf("SaveMax one byte short: %d, %v; want 0, ErrTooLarge", n, err)
	}
	if _, err := os.Stat(small); !os.IsNotExist(err) {
		t.Errorf("SaveMax over the budget left a file: %v", err)
	}
	if n, err := tr.SaveMax(small, full.Size()); err != nil || n != full.Size() {
		t.Errorf("SaveMax with exactly the size: %d, %v; want %d", n, err, full.Size())
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("saved trace mode %v, want 0600", fi.Mode().Perm())
	}

	// Lines look like
	//   name-123 [001] ..... 1234.567890: tracing_mark_write: xskgate outer/1 ...
	type mark struct {
		ts   float64
		text string
	}
	var marks []mark
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		before, text, ok := strings.Cut(line, ": tracing_mark_write: ")
		if !ok {
			continue
		}
		fields := strings.Fields(before)
		ts, err := strconv.ParseFloat(strings.TrimSuffix(fields[len(fields)-1], ":"), 64)
		if err != nil {
			t.Fatalf("cannot parse timestamp in %q: %v", line, err)
		}
		marks = append(marks, mark{ts, text})
	}
	if len(marks) != len(evs)+1 {
		t.Fatalf("saved trace has %d markers, want %d:\n%+v", len(marks), len(evs)+1, marks)
	}
	for i, e := range evs {
		want := fmt.Sprintf("xskgate outer/1 %s addr=%#x len=%d batch=%d aux=%d t=%d", e.Op, e.Addr, e.Len, e.Batch, e.Aux, e.Time)
		if marks[i].text != want {
			t.Errorf("marker %d = %q, want %q", i, marks[i].text, want)
		}
		// trace_clock mono prints CLOCK_MONOTONIC seconds with µs
		// resolution: the marker's time lies between the event's Now()
		// and the Now() taken after the last write (the first write to a
		// fresh instance can take a millisecond under load; no fixed
		// bound holds).
		if ts := time.Duration(marks[i].ts * 1e9); ts < time.Duration(e.Time)-2*time.Microsecond || ts > time.Duration(marked)+2*time.Microsecond {
			t.Errorf("marker %d ftrace time %.6f outside [event %d, after writes %d]", i, marks[i].ts, e.Time, marked)
		}
	}
	last := marks[len(marks)-1].text
	if !strings.HasPrefix(last, freezeToken+" reason=rx_not_in_fill addr=0x2040 t=") {
		t.Errorf("last marker = %q, want the freeze line", last)
	}
}

func TestTracerCloseIdempotent(t *testing.T) {
	tr := openTestTracer(t)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	tr.Mark(Event{Op: RxRecv}, "outer", 0)
	if st := tr.Stats(); st.Suppressed != 1 || st.Marks != 0 {
		t.Errorf("Mark after Close: stats %+v", st)
	}
	if err := tr.Freeze("late"); err == nil {
		t.Error("Freeze after Close succeeded")
	}
	if err := tr.Save(filepath.Join(t.TempDir(), "x")); err == nil {
		t.Error("Save after Close succeeded")
	}
}

func TestOpenTracerReplacesStaleInstance(t *testing.T) {
	tr := openTestTracer(t)
	// Simulate a crashed run: the instance exists but nobody holds it.
	tr.mu.Lock()
	tr.marker.Close()
	tr.marker = nil
	tr.mu.Unlock()
	name := strings.TrimPrefix(filepath.Base(tr.Dir()), instancePrefix)
	tr2, err := OpenTracer(name)
	if err != nil {
		t.Fatalf("OpenTracer over stale instance: %v", err)
	}
	defer tr2.Close()
	if got := readCtl(t, tr2, "tracing_on"); got != "1" {
		t.Errorf("tracing_on = %q in the replacement, want 1", got)
	}
	// The first instance is held open by tr2 now: a third open must fail
	// rather than pull the instance out from under it.
	if tr3, err := OpenTracer(name); err == nil {
		tr3.Close()
		t.Error("OpenTracer over a live instance succeeded")
	}
}

func TestMarkDoesNotAllocate(t *testing.T) {
	tr := openTestTracer(t)
	e := Event{Time: Now(), Addr: 0x2040, Len: 60, Op: RxRecv, Batch: 2}
	tr.Mark(e, "outer", 0) // grow the buffer
	if a := testing.AllocsPerRun(100, func() { tr.Mark(e, "outer", 0) }); a != 0 {
		t.Errorf("Mark: %v allocs/op, want 0", a)
	}
}

func BenchmarkMark(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	if _, err := findTracefs(); err != nil {
		b.Skipf("skipping: %v", err)
	}
	tr, err := OpenTracer(fmt.Sprintf("test-%d-bench", os.Getpid()))
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	e := Event{Time: Now(), Addr: 0x2040, Len: 60, Op: RxRecv, Batch: 2}
	b.ReportAllocs()
	for b.Loop() {
		tr.Mark(e, "outer", 0)
	}
}
