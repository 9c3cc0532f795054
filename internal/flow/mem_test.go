package flow

import (
	"math/rand/v2"
	"syscall"
	"testing"
)

// BenchmarkMemLatency chases pointers through a 256 MiB arena (mapped like
// a big table, with MADV_HUGEPAGE) in a random cyclic order: chains=1 is
// the latency of one dependent DRAM miss; with k independent chains
// advanced in lock step, ns/op divided by k shows how many misses the core
// overlaps. It bounds what a lookup that needs one or two dependent misses
// can reach on this machine.
func BenchmarkMemLatency(b *testing.B) {
	const lines = 256 << 20 / 64
	a := newArena(lines * 64)
	if a.raw != nil {
		defer syscall.Munmap(a.raw)
	}
	next := carve[uint64](a, new(int), lines*8)
	perm := rand.Perm(lines)
	for i := range perm {
		next[perm[i]*8] = uint64(perm[(i+1)%lines] * 8)
	}
	for _, k := range []int{1, 2, 4, 8, 16} {
		b.Run("chains="+string(rune('0'+k/10))+string(rune('0'+k%10)), func(b *testing.B) {
			var p [16]uint64
			for j := range k {
				p[j] = uint64(perm[j*(lines/16)] * 8)
			}
			n := 0
			for b.Loop() {
				for j := 0; j < k; j++ {
					p[j] = next[p[j]]
				}
				n++
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n*k), "ns/miss")
		})
	}
}
