package integrity

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// violate makes one RX violation of class cls (MetaLenMismatch or BadMeta)
// with a capturable frame: chunk 1 goes to FILL and comes back on RX with
// a record that disagrees with the descriptor.
func (x *unit) violate(cls Class) {
	x.t.Helper()
	x.fill(engine.Outer, 1)
	d := x.frame(engine.Outer, 1, 60)
	m := x.area[d.Addr-xdpprog.MetaSize : d.Addr]
	switch cls {
	case MetaLenMismatch:
		binary.LittleEndian.PutUint32(m[4:], 61)
	case BadMeta:
		binary.LittleEndian.PutUint32(m[12:], 9) // another queue
	default:
		x.t.Fatalf("violate: class %s not supported", cls)
	}
	if got := x.recv(engine.Outer, d); got[0] != F {
		x.t.Fatalf("%s: disposition %v, want Free", cls, got[0])
	}
}

// dirBytes sums the sizes of the files in dir.
func dirBytes(t *testing.T, dir string) (total int64, files int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		total += fi.Size()
		files++
	}
	return total, files
}

// syncBuffer is a log sink for several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestEvidenceCap: under a storm of violations the evidence files in the
// dump directory (earlier runs' included) never exceed MaxBytes; at the cap
// (no record fits any more) nothing more is written, what was refused is
// counted, and the cap is logged once.
func TestEvidenceCap(t *testing.T) {
	dir := t.TempDir()
	const earlier = 10_000
	if err := os.WriteFile(filepath.Join(dir, "violations-earlier-run.pcapng"), make([]byte, earlier), 0o600); err != nil {
		t.Fatal(err)
	}
	// Not xskgate's: not counted.
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cfg := DefaultConfig()
	cfg.DumpDir = dir
	cfg.MaxBytes = 40_000
	cfg.CaptureRate, cfg.CaptureBurst = 1e9, 1<<30 // the cap, not the rate, limits here
	x := newUnit(t, cfg, 1)
	x.checks.log = slog.New(slog.NewTextHandler(&logs, nil))
	if got := x.checks.Evidence().Bytes; got != earlier {
		t.Fatalf("evidence bytes at start %d, want the earlier run's %d", got, earlier)
	}

	// Each frame record is about 450 bytes: the cap is reached well
	// within 200 violations.
	const storm = 200
	for range storm {
		x.violate(MetaLenMismatch)
	}
	ev := x.checks.Evidence()
	if !ev.CapReached {
		t.Fatalf("cap not reached after %d violations: %+v", storm, ev)
	}
	total, _ := dirBytes(t, dir)
	written := total - (1 << 20) // the unrelated file
	if written > cfg.MaxBytes || written != ev.Bytes {
		t.Fatalf("evidence files hold %d bytes, Evidence says %d, cap %d", written, ev.Bytes, cfg.MaxBytes)
	}
	pc := x.checks.CapturePath()
	if pc == "" {
		t.Fatal("no capture written before the cap")
	}
	captured := countRecords(t, pc)
	if _, capped := ev.NotCaptured(); captured == 0 || uint64(captured)+capped != storm {
		t.Fatalf("captured %d + refused at the cap %d != %d violations", captured, capped, storm)
	}

	t.Logf("%d violations: %d frames captured, %d refused at the cap, %d bytes of %d", storm, captured, storm-captured, ev.Bytes, cfg.MaxBytes)
	// At the cap: more violations write nothing, are counted, and are
	// still detected.
	for range 50 {
		x.violate(MetaLenMismatch)
	}
	if got, _ := dirBytes(t, dir); got != total {
		t.Fatalf("the directory grew at the cap: %d -> %d bytes", total, got)
	}
	ev2 := x.checks.Evidence()
	if _, c1 := ev.NotCaptured(); func() uint64 { _, c2 := ev2.NotCaptured(); return c2 - c1 }() != 50 {
		t.Fatalf("refused frames %v -> %v, want 50 more", ev.FramesCapped[MetaLenMismatch], ev2.FramesCapped[MetaLenMismatch])
	}
	if n := x.checks.Counts()[MetaLenMismatch]; n != storm+50 {
		t.Fatalf("violations counted %d, want %d", n, storm+50)
	}
	if _, err := x.checks.DumpNow("operator"); !errors.Is(err, ErrEvidenceCap) {
		t.Fatalf("DumpNow at the cap: %v, want ErrEvidenceCap", err)
	}
	if got, _ := dirBytes(t, dir); got != total {
		t.Fatalf("DumpNow wrote at the cap: %d -> %d bytes", total, got)
	}
	if n := strings.Count(logs.String(), "integrity evidence cap reached"); n != 1 {
		t.Fatalf("cap logged %d times, want once:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "integrity.evidence_max_bytes") {
		t.Fatalf("cap line does not say how to fix it:\n%s", logs.String())
	}
}

// TestEvidenceCapAtStart: a directory already over the cap gets nothing
// new, from the first violation on.
func TestEvidenceCapAtStart(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "flightrec-old.txt"), make([]byte, 5000), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DumpDir = dir
	cfg.MaxBytes = 4096
	x := newUnit(t, cfg, 1)
	for range 3 {
		x.violate(BadMeta)
	}
	if total, files := dirBytes(t, dir); total != 5000 || files > 2 {
		// The empty pcapng may exist until Close removes it.
		t.Fatalf("directory holds %d bytes in %d files, want only the old 5000", total, files)
	}
	ev := x.checks.Evidence()
	if ev.FramesCapped[BadMeta] != 3 || ev.DumpsCapped < 1 || ev.DumpsCapped+ev.DumpsInterval != 3 || !ev.CapReached {
		t.Fatalf("evidence %+v: want 3 frames and the first dump refused", ev)
	}
}

// TestCaptureRatePerClass: each class has its own bucket; a storm of one
// class neither captures beyond its burst nor takes another class's tokens.
func TestCaptureRatePerClass(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.DumpDir = dir
	cfg.CaptureRate, cfg.CaptureBurst = 1e-6, 5 // no refill within the test
	x := newUnit(t, cfg, 1)
	start := time.Now()
	for range 40 {
		x.violate(MetaLenMismatch)
	}
	for range 3 {
		x.violate(BadMeta)
	}
	ev := x.checks.Evidence()
	if ev.FramesRateLimited[MetaLenMismatch] != 35 || ev.FramesRateLimited[BadMeta] != 0 {
		t.Fatalf("rate-limited frames: meta_len_mismatch %d (want 35), bad_meta %d (want 0)",
			ev.FramesRateLimited[MetaLenMismatch], ev.FramesRateLimited[BadMeta])
	}
	if n := countRecords(t, x.checks.CapturePath()); n != 5+3 {
		t.Fatalf("capture holds %d frames, want 5 + 3", n)
	}
	// Dumps: the first violation's, then at most one a second; the others
	// are counted.
	st := x.checks.Stats()
	secs := int(time.Since(start)/time.Second) + 1
	if st.Dumps < 1 || st.Dumps > 1+secs || uint64(st.Dumps)+ev.DumpsInterval != 43 {
		t.Fatalf("%d dumps + %d skipped in %d s, want 1..%d of 43", st.Dumps, ev.DumpsInterval, secs, 1+secs)
	}
}

// TestBucket: the token bucket refills at the rate, up to the burst.
func TestBucket(t *testing.T) {
	var b budget
	b.init(Config{CaptureRate: 10, CaptureBurst: 2})
	t0 := time.Unix(1000, 0)
	for i, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, true}, {0, true}, {0, false}, // the burst
		{100 * time.Millisecond, true}, {100 * time.Millisecond, false}, // one token in 100 ms
		{150 * time.Millisecond, false}, {250 * time.Millisecond, true},
		{time.Hour, true}, {time.Hour, true}, {time.Hour, false}, // refilled to the burst only
	} {
		if got := b.allowFrame(BadLen, t0.Add(tc.at)); got != tc.want {
			t.Fatalf("step %d at %v: allow %v, want %v", i, tc.at, got, tc.want)
		}
	}
	if got := b.framesRate[BadLen].Load(); got != 4 {
		t.Fatalf("counted %d refused frames, want 4", got)
	}
	if b.allowFrame(BadAddr, t0) != true {
		t.Fatal("another class shares the bucket")
	}
}

func countRecords(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(bufio.NewReader(f), pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
}
