package flightrec

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestNewRecorderSize(t *testing.T) {
	tests := []struct {
		in, want int
	}{
		{-1, DefaultSize},
		{0, DefaultSize},
		{1, 1},
		{2, 2},
		{3, 4},
		{1000, 1024},
		{1024, 1024},
		{MaxSize, MaxSize},
		{MaxSize + 1, MaxSize},
	}
	for _, tt := range tests {
		if got := NewRecorder("x", 0, tt.in).Size(); got != tt.want {
			t.Errorf("NewRecorder(size=%d).Size() = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// ev derives every field from i so a torn or misplaced event is detectable.
func ev(i uint64) Event {
	return Event{
		Time:  1_000_000 + int64(i),
		Addr:  i << 12,
		Len:   uint32(i*7) | 1,
		Batch: uint32(i >> 3),
		Op:    Op(1 + i%uint64(numBuiltinOps-1)),
		Aux:   ^uint32(i),
	}
}

func recordEv(r *Recorder, i uint64) {
	e := ev(i)
	r.RecordAt(e.Time, e.Op, e.Addr, e.Len, e.Batch, e.Aux)
}

func TestWrapAround(t *testing.T) {
	tests := []struct {
		name      string
		size, n   int
		wantFirst uint64
	}{
		{"empty", 8, 0, 0},
		{"partial", 8, 5, 0},
		{"exactly full", 8, 8, 0},
		{"one over", 8, 9, 1},
		{"many laps", 8, 83, 75},
		{"size one", 1, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := NewRecorder("outer", 0, tt.size)
			for i := range tt.n {
				recordEv(r, uint64(i))
			}
			if got := r.Recorded(); got != uint64(tt.n) {
				t.Errorf("Recorded() = %d, want %d", got, tt.n)
			}
			got := r.Snapshot(nil)
			if want := tt.n - int(tt.wantFirst); len(got) != want {
				t.Fatalf("Snapshot returned %d events, want %d", len(got), want)
			}
			for k, e := range got {
				if want := ev(tt.wantFirst + uint64(k)); e != want {
					t.Errorf("event %d = %+v, want %+v", k, e, want)
				}
			}
		})
	}
}

func TestSnapshotAppends(t *testing.T) {
	r := NewRecorder("outer", 0, 4)
	recordEv(r, 0)
	prefix := []Event{{Addr: 42}}
	got := r.Snapshot(prefix)
	if len(got) != 2 || got[0].Addr != 42 || got[1] != ev(0) {
		t.Fatalf("Snapshot(prefix) = %+v", got)
	}
}

func TestNilRecorder(t *testing.T) {
	var r *Recorder
	r.Record(RxRecv, 1, 2, 3, 4)
	r.RecordAt(1, RxRecv, 1, 2, 3, 4)
	if got := r.Snapshot(nil); len(got) != 0 {
		t.Fatalf("nil Snapshot = %v", got)
	}
	var buf bytes.Buffer
	if err := Dump(&buf, "nil", r); err != nil {
		t.Fatal(err)
	}
}

func TestRecordTimeIsMonotonic(t *testing.T) {
	r := NewRecorder("outer", 0, 16)
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	before := ts.Nano()
	r.Record(FillPost, 0x1000, 0, 1, 0)
	r.Record(RxRecv, 0x1000, 60, 1, 0)
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	after := ts.Nano()
	slack := int64(CalibrationError())
	got := r.Snapshot(nil)
	if got[0].Time > got[1].Time {
		t.Errorf("times not ordered: %d > %d", got[0].Time, got[1].Time)
	}
	for _, e := range got {
		if e.Time < before-slack || e.Time > after+slack {
			t.Errorf("event time %d outside CLOCK_MONOTONIC bracket [%d, %d] ± %d", e.Time, before, after, slack)
		}
	}
	if CalibrationError() <= 0 || CalibrationError() > 100*time.Microsecond {
		t.Errorf("CalibrationError() = %v, want small and positive", CalibrationError())
	}
}

// TestSnapshotConcurrent runs a writer flat out over a small ring while
// readers snapshot it: every returned event must be exactly as written and
// the events must be consecutive. Under -race this also proves the scheme is
// free of data races.
func TestSnapshotConcurrent(t *testing.T) {
	n := uint64(2_000_000)
	if testing.Short() || raceEnabled {
		n = 200_000
	}
	for _, size := range []int{1, 16, 1024} {
		t.Run("size="+itoa(size), func(t *testing.T) {
			r := NewRecorder("outer", 0, size)
			var done atomic.Bool
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer done.Store(true)
				runtime.LockOSThread()
				defer runtime.UnlockOSThread()
				for i := range n {
					recordEv(r, i)
				}
			}()
			var snaps, events, partial atomic.Uint64
			check := func() {
				var buf []Event
				for !done.Load() {
					buf = r.Snapshot(buf[:0])
					snaps.Add(1)
					events.Add(uint64(len(buf)))
					if len(buf) < min(size, int(r.Recorded())) {
						partial.Add(1)
					}
					for k, e := range buf {
						i := uint64(e.Time - 1_000_000)
						if e != ev(i) {
							t.Errorf("torn event %+v (want %+v)", e, ev(i))
							return
						}
						if k > 0 && e.Time != buf[k-1].Time+1 {
							t.Errorf("events not consecutive: %d after %d", e.Time, buf[k-1].Time)
							return
						}
					}
				}
			}
			var rg sync.WaitGroup
			for range 2 {
				rg.Go(check)
			}
			rg.Wait()
			wg.Wait()
			if got := r.Snapshot(nil); len(got) != size || got[len(got)-1] != ev(n-1) {
				t.Errorf("final snapshot: %d events, last %+v", len(got), got[len(got)-1])
			}
			t.Logf("%d snapshots, %d events, %d lost some to the writer", snaps.Load(), events.Load(), partial.Load())
		})
	}
}

func itoa(i int) string { return formatAux(OpInvalid, uint32(i)) }

func TestRecordDoesNotAllocate(t *testing.T) {
	r := NewRecorder("outer", 0, 64)
	var i uint64
	if a := testing.AllocsPerRun(1000, func() {
		i++
		r.Record(RxRecv, i, 60, uint32(i), 0)
	}); a != 0 {
		t.Errorf("Record: %v allocs/op, want 0", a)
	}
	if a := testing.AllocsPerRun(1000, func() {
		i++
		r.RecordAt(Now(), TxPost, i, 60, uint32(i), 0)
	}); a != 0 {
		t.Errorf("RecordAt: %v allocs/op, want 0", a)
	}
}

func TestThreadAndChunk(t *testing.T) {
	r := NewRecorder("inner", 3, 8)
	if cpu, tid := r.Thread(); cpu != -1 || tid != -1 {
		t.Errorf("initial Thread() = %d, %d; want -1, -1", cpu, tid)
	}
	r.SetThread(7, 123456)
	if cpu, tid := r.Thread(); cpu != 7 || tid != 123456 {
		t.Errorf("Thread() = %d, %d; want 7, 123456", cpu, tid)
	}
	if r.Iface() != "inner" || r.Queue() != 3 {
		t.Errorf("Iface/Queue = %s/%d", r.Iface(), r.Queue())
	}
	tests := []struct {
		size      uint32
		unaligned bool
		addr      uint64
		want      string
	}{
		{4096, false, 0x2a040, "0x2a000+0x40"},
		{2048, false, 0x2a840, "0x2a800+0x40"},
		{4096, false, 0x3000, "0x3000+0x0"},
		{3000, true, 0x100 | 0x40<<48, "0x0+0x140"},
		{4096, true, 0x5000 | 0x100<<48, "0x5000+0x100"},
		{0, false, 0x1234, "-"},
	}
	for _, tt := range tests {
		r.SetChunkSize(tt.size, tt.unaligned)
		if got := r.chunkOf(tt.addr); got != tt.want {
			t.Errorf("chunkOf(%#x) with size %d unaligned %t = %s, want %s", tt.addr, tt.size, tt.unaligned, got, tt.want)
		}
	}
}

func TestOpNames(t *testing.T) {
	tests := []struct {
		op   Op
		want string
	}{
		{FillPost, "FillPost"},
		{RxRecv, "RxRecv"},
		{TxPost, "TxPost"},
		{CompRecv, "CompRecv"},
		{Drop, "Drop"},
		{Quarantine, "Quarantine"},
		{Violation, "Violation"},
		{Kick, "Kick"},
		{OpUser + 100, "Op(164)"},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("Op(%d).String() = %q, want %q", tt.op, got, tt.want)
		}
		if got := string(appendOp(nil, tt.op)); got != tt.want {
			t.Errorf("appendOp(%d) = %q, want %q", tt.op, got, tt.want)
		}
	}
	const myOp = OpUser + 1
	RegisterOp(myOp, "Reclaim")
	RegisterOp(myOp, "Reclaim") // same name again is fine
	if got := myOp.String(); got != "Reclaim" {
		t.Errorf("registered op String() = %q", got)
	}
	for _, bad := range []struct {
		op   Op
		name string
	}{{Drop, "Mine"}, {myOp, "Other"}, {OpUser + 2, ""}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("RegisterOp(%d, %q) did not panic", bad.op, bad.name)
				}
			}()
			RegisterOp(bad.op, bad.name)
		}()
	}
}

func TestDumpMergesInTimeOrder(t *testing.T) {
	outer := NewRecorder("outer", 0, 16)
	inner := NewRecorder("inner", 1, 16)
	outer.SetThread(0, 1001)
	inner.SetThread(1, 1002)
	SetAuxFormatter(Violation, func(aux uint32) string {
		if aux == 3 {
			return "rx_not_in_fill"
		}
		return "class" + itoa(int(aux))
	})
	defer SetAuxFormatter(Violation, nil)

	base := Now()
	// Interleave: outer at even, inner at odd offsets; one tie at +10.
	outer.RecordAt(base+0, FillPost, 0x2000, 0, 1, 0)
	inner.RecordAt(base+1, FillPost, 0x9000, 0, 1, 0)
	outer.RecordAt(base+2, RxRecv, 0x2040, 60, 2, 5)
	inner.RecordAt(base+3, TxPost, 0x2040, 60, 2, 0)
	outer.RecordAt(base+10, Violation, 0x2040, 60, 3, 3)
	inner.RecordAt(base+10, CompRecv, 0x2040, 0, 3, 0)
	inner.RecordAt(1_000_000_000+base+12, Quarantine, 0x2040, 0, 4, 0)

	var buf bytes.Buffer
	if err := Dump(&buf, "test\nreason", outer, nil, inner); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Log("\n" + out)
	if !strings.Contains(out, `# reason: test\nreason`) {
		t.Errorf("header does not carry the escaped reason")
	}
	var lines []string
	for l := range strings.Lines(out) {
		if !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	want := []struct{ who, op, extra string }{
		{"outer/0", "FillPost", "0x2000+0x0"},
		{"inner/1", "FillPost", "0x9000+0x0"},
		{"outer/0", "RxRecv", "0x2000+0x40"},
		{"inner/1", "TxPost", " 1002 "},
		{"outer/0", "Violation", "rx_not_in_fill"},
		{"inner/1", "CompRecv", " 1 "},
		{"inner/1", "Quarantine", "1.000000012"},
	}
	if len(lines) != len(want) {
		t.Fatalf("got %d event lines, want %d", len(lines), len(want))
	}
	for i, w := range want {
		f := strings.Fields(lines[i])
		if f[4] != w.who || f[5] != w.op || !strings.Contains(lines[i], w.extra) {
			t.Errorf("line %d = %q, want %s %s containing %q", i, lines[i], w.who, w.op, w.extra)
		}
	}
	if !strings.HasPrefix(lines[0], "     0.000000000 ") {
		t.Errorf("first line not at relative time 0: %q", lines[0])
	}
}

func TestDumpFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	r := NewRecorder("outer", 0, 8)
	r.Record(Violation, 0x1000, 60, 9, 1)
	p1, err := DumpFile(dir, "rx_not_in_fill addr=0x1000", r)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := DumpFile(dir, "rx_not_in_fill addr=0x1000", r)
	if err != nil {
		t.Fatal(err)
	}
	if p1 == p2 {
		t.Fatalf("two dumps share path %s", p1)
	}
	for _, p := range []string{p1, p2} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, st.Mode().Perm())
		}
		if !strings.Contains(filepath.Base(p), "rx_not_in_fill_addr_0x1000") {
			t.Errorf("file name %s does not carry the reason", p)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "Violation") {
			t.Errorf("%s lacks the event:\n%s", p, b)
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		t.Errorf("dump dir mode %v, want no group/other access", st.Mode().Perm())
	}
}

func BenchmarkRecord(b *testing.B) {
	r := NewRecorder("outer", 0, DefaultSize)
	b.ReportAllocs()
	var i uint32
	for b.Loop() {
		i++
		r.Record(RxRecv, uint64(i)<<12, 60, i, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

// BenchmarkRecordAt is the batch path: one clock read per 64 events.
func BenchmarkRecordAt(b *testing.B) {
	r := NewRecorder("outer", 0, DefaultSize)
	b.ReportAllocs()
	var i uint32
	now := Now()
	for b.Loop() {
		i++
		if i%64 == 0 {
			now = Now()
		}
		r.RecordAt(now, RxRecv, uint64(i)<<12, 60, i, 0)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N), "ns/event")
}

func BenchmarkNow(b *testing.B) {
	b.ReportAllocs()
	var s int64
	for b.Loop() {
		s += Now()
	}
	_ = s
}

func BenchmarkSnapshot(b *testing.B) {
	r := NewRecorder("outer", 0, DefaultSize)
	for i := range DefaultSize {
		recordEv(r, uint64(i))
	}
	buf := make([]Event, 0, DefaultSize)
	b.ReportAllocs()
	for b.Loop() {
		buf = r.Snapshot(buf[:0])
	}
}
