package flow

import (
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// threadCPU returns the CPU time the calling OS thread has used. The serial
// benchmarks lock their goroutine to a thread and report operations per
// CPU-second next to the wall-clock rate: on a shared, oversubscribed
// machine the wall-clock rate measures the neighbours, the CPU-time rate
// measures the code on one core.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	if err := syscall.Getrusage(rusageThread, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// serial runs fn b.N times on one locked thread and reports name/s (wall)
// and name/cpu-s (per core).
func serial(b *testing.B, name string, fn func(i int)) { serialN(b, name, 1, fn) }

// serialN is serial for an fn that performs per operations per call.
func serialN(b *testing.B, name string, per int, fn func(i int)) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	c0 := threadCPU()
	i := 0
	for b.Loop() {
		fn(i)
		i++
	}
	cpu := threadCPU() - c0
	ops := float64(b.N * per)
	b.ReportMetric(ops/b.Elapsed().Seconds(), name+"/s")
	if cpu > 0 {
		b.ReportMetric(ops/cpu.Seconds(), name+"/cpu-s")
	}
}

const benchFlows = 1 << 20

var bench struct {
	once sync.Once
	t    *Table
	segs []Segment // client ACKs of established flows, in random order
}

// benchTable builds a table of 1M established flows (1/4 IPv6), once.
func benchTable(b *testing.B) (*Table, []Segment) {
	bench.once.Do(func() {
		t, err := New(Config{Capacity: benchFlows})
		if err != nil {
			b.Fatal(err)
		}
		srv4, srv6 := netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("2001:2:db8::10")
		segs := make([]Segment, benchFlows)
		for i := range segs {
			var src, dst netip.Addr
			if i%4 == 3 {
				var a [16]byte
				a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb9
				a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)
				src, dst = netip.AddrFrom16(a), srv6
			} else {
				src, dst = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), srv4
			}
			cISN, sISN := uint32(i)*2654435761, uint32(i)*40503
			s := Segment{Src: src, Dst: dst, SrcPort: uint16(1024 + i%60000), DstPort: 443,
				Flags: FlagACK, Seq: cISN + 1, Ack: sISN + 1, Window: 1000, WScale: -1, Dir: Inbound}
			v := t.Insert(&s, Open{State: StateEstablished, ClientISN: cISN, ClientWScale: 7,
				ClientWindow: 1000, ServerISN: sISN, ServerWScale: 7, ServerWindow: 1000}, 1000)
			if !v.New {
				b.Fatalf("flow %d: %+v", i, v)
			}
			segs[i] = s
		}
		rand.Shuffle(len(segs), func(i, j int) { segs[i], segs[j] = segs[j], segs[i] })
		bench.t, bench.segs = t, segs
	})
	return bench.t, bench.segs
}

func reportRate(b *testing.B, name string, procs int) {
	rate := float64(b.N) / b.Elapsed().Seconds()
	b.ReportMetric(rate, name+"/s")
	if procs > 1 {
		b.ReportMetric(rate/float64(procs), name+"/s/core")
	}
}

// BenchmarkLookup: read-only lookups of random flows in a table of 1M.
func BenchmarkLookup(b *testing.B) {
	t, segs := benchTable(b)
	b.Run("1M/serial", func(b *testing.B) {
		mask := len(segs) - 1
		found := 0
		serial(b, "lookups", func(i int) {
			if _, ok := t.Lookup(&segs[i&mask], 1000); ok {
				found++
			}
		})
		if found != b.N {
			b.Fatal("flows missing")
		}
		b.ReportMetric(t.MemoryPerFlow(), "B/flow")
	})
	b.Run("1M/batch", func(b *testing.B) {
		// LookupBatch over receive-sized batches of 64 random flows.
		out := make([]LookupResult, 64)
		nb := len(segs) / 64
		serialN(b, "lookups", 64, func(i int) {
			j := i % nb * 64
			t.LookupBatch(segs[j:j+64], 1000, out)
		})
	})
	b.Run("hot", func(b *testing.B) {
		// One flow, always in cache: the compute cost without DRAM misses.
		s := &segs[0]
		serial(b, "lookups", func(int) { t.Lookup(s, 1000) })
	})
	b.Run("1M/parallel", func(b *testing.B) {
		b.ReportAllocs()
		var start atomic.Int64
		mask := len(segs) - 1
		procs := 0
		var mu sync.Mutex
		b.RunParallel(func(pb *testing.PB) {
			mu.Lock()
			procs++
			mu.Unlock()
			i := int(start.Add(1<<18)) & mask
			for pb.Next() {
				t.Lookup(&segs[i&mask], 1000)
				i++
			}
		})
		reportRate(b, "lookups", procs)
	})
}

// BenchmarkTrack: a pure ACK on an established flow, the common case.
func BenchmarkTrack(b *testing.B) {
	b.Run("established/hot", func(b *testing.B) {
		t := newTable(b, Config{Capacity: 1024})
		x := newConn(b, t)
		x.handshake()
		s := x.seg(fromC, FlagACK, 0)
		serial(b, "segments", func(int) {
			if v := t.Track(s, 1000); v.Reason != ReasonOk {
				b.Fatal(v)
			}
		})
	})
	b.Run("established/1M", func(b *testing.B) {
		t, segs := benchTable(b)
		mask := len(segs) - 1
		serial(b, "segments", func(i int) {
			if v := t.Track(&segs[i&mask], 1000); v.Action != Pass {
				b.Fatal(v)
			}
		})
	})
	b.Run("established/1M/batch", func(b *testing.B) {
		t, segs := benchTable(b)
		out := make([]Verdict, 64)
		nb := len(segs) / 64
		serialN(b, "segments", 64, func(i int) {
			j := i % nb * 64
			t.TrackBatch(segs[j:j+64], 1000, out)
		})
	})
	b.Run("established/1M/parallel", func(b *testing.B) {
		t, segs := benchTable(b)
		mask := len(segs) - 1
		var start atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := int(start.Add(1<<18)) & mask
			for pb.Next() {
				t.Track(&segs[i&mask], 1000)
				i++
			}
		})
		reportRate(b, "segments", runtime.GOMAXPROCS(0))
	})
	// A SYN flood against a full table of half-open flows: every SYN
	// evicts one (the table-full path).
	b.Run("syn/full-evict", func(b *testing.B) {
		const n = 1 << 16
		t := newTable(b, Config{Capacity: n})
		for i := 0; i < n; i++ {
			t.Track(synFrom(i), 1000)
		}
		segs := make([]Segment, 1<<20)
		for i := range segs {
			segs[i] = *synFrom(n + i)
		}
		serial(b, "segments", func(i int) {
			s := &segs[i&(len(segs)-1)]
			s.Seq++ // a fresh ISN if the tuple comes round again
			t.Track(s, 1000)
		})
		st := t.Stats()
		b.ReportMetric(float64(st.TableFull)/float64(b.N), "refused/op")
	})
}

func BenchmarkHash(b *testing.B) {
	s := synFrom(12345)
	var h hasher
	var sink uint64
	serial(b, "hashes", func(int) {
		k, _ := makeKey(s)
		sink += h.hash(&k)
	})
	_ = sink
}
