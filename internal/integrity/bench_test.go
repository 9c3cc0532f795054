package integrity

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// BenchmarkChecker measures the checker per descriptor: one op is a batch
// of 64 frames going through PostFill, Received, PostTx and Completed, with
// the test playing the engine (ring posts) and the kernel (consumers, meta
// sequence). ns/desc is the full cycle of one descriptor.
func BenchmarkChecker(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("checks=%v", map[bool]string{true: "on", false: "off"}[on]), func(b *testing.B) { benchChecker(b, on) })
	}
}

func benchChecker(b *testing.B, on bool) {
	const n = 64
	x := newUnit(b, DefaultConfig(), 1)
	for c := range NumChecks {
		x.checks.SetEnabled(c, on)
	}
	addrs := make([]uint64, n)
	descs := make([]xsk.Desc, n)
	for i := range n {
		addrs[i] = base(i)
		descs[i] = x.frame(engine.Outer, i, 60)
	}
	out := make([]engine.Disposition, n)
	k := x.k
	fo, ti := x.ports[engine.Outer], x.ports[engine.Inner]
	seq := uint32(0)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		clear(out)
		k.PostFill(engine.Outer, addrs, out)
		fo.fill.Put(addrs)
		fo.consume()
		for i := range descs {
			seq++
			binary.LittleEndian.PutUint32(x.area[descs[i].Addr-8:], seq) // the kernel's metadata
		}
		if k.Received(engine.Outer, descs, out) != 0 {
			b.Fatal(x.checks.Violations())
		}
		k.PostTx(engine.Inner, descs, out)
		ti.tx.Put(descs)
		ti.consume()
		if k.Completed(engine.Inner, addrsOf(descs, addrs), out) != 0 {
			b.Fatal(x.checks.Violations())
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/desc")
}

// addrsOf turns descriptors into the completion addresses, in place in buf
// (the exact TX address, as COMPLETION returns it), then restores the FILL
// addresses lazily: callers pass the same scratch each time.
func addrsOf(descs []xsk.Desc, buf []uint64) []uint64 {
	for i, d := range descs {
		buf[i] = d.Addr
	}
	defer func() {
		for i := range buf {
			buf[i] = base(i)
		}
	}()
	return buf
}

// BenchmarkEngineModel is the engine forwarding through the kernel model,
// with and without the checks: descriptors per second, allocations.
func BenchmarkEngineModel(b *testing.B) {
	for _, on := range []bool{true, false} {
		b.Run(fmt.Sprintf("checks=%v", map[bool]string{true: "on", false: "off"}[on]), func(b *testing.B) {
			g := newGate(b, gateOpts{noChecks: !on, traffic: kmodel.Traffic{Seed: 1, MinLen: 60, MaxLen: 60}})
			g.send(b, 2000) // warm up
			g.settle(b, 2000)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			before := g.sink.Stats().Received
			g.send(b, b.N)
			g.settle(b, before+uint64(b.N))
			got := g.sink.Stats().Received - before
			b.ReportMetric(float64(got)/time.Since(start).Seconds(), "desc/s")
			b.StopTimer()
			if vs := g.checks.Violations(); len(vs) > 0 {
				b.Fatal(vs[0])
			}
		})
	}
}

// TestCheckerAllocs pins zero allocations on the hot path: a full cycle
// of 64 descriptors, checks on.
func TestCheckerAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a benchmark")
	}
	res := testing.Benchmark(func(b *testing.B) { benchChecker(b, true) })
	if res.N == 0 || res.AllocsPerOp() != 0 {
		t.Fatalf("%d allocations per batch (N=%d)", res.AllocsPerOp(), res.N)
	}
}
