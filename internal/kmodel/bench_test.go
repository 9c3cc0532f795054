package kmodel

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/xsk"
)

type countSink struct{ n, bytes uint64 }

func (c *countSink) Deliver(f []byte) bool { c.n++; c.bytes += uint64(len(f)); return true }

// BenchmarkModelRxTx measures the model alone: per frame one Deliver, its
// share of a NAPI poll (RX descriptor, FILL entry, copy, metadata), then the
// same descriptor through TX and Kick (validation, copy out, COMPLETION)
// and back to FILL. One op is one frame = two descriptors; desc/s counts RX
// and TX descriptors.
func BenchmarkModelRxTx(b *testing.B) {
	for _, size := range []int{64, 1500} {
		b.Run(fmt.Sprintf("len%d", size), func(b *testing.B) {
			const chunks = 512
			umem := make([]byte, chunks*testFS)
			p, err := NewPort(Config{Umem: umem, FrameSize: testFS, FillSize: 512, CompSize: 512, RxSize: 512, TxSize: 512})
			if err != nil {
				b.Fatal(err)
			}
			defer p.Close()
			sink := &countSink{}
			p.SetPeer(sink)
			fill, comp, rx, tx := p.Rings()
			addrs := make([]uint64, chunks)
			for i := range addrs {
				addrs[i] = uint64(i) * testFS
			}
			if n, _ := fill.Put(addrs[:256]); n != 256 {
				b.Fatal("fill")
			}
			frame := Traffic{Seed: 1, MinLen: size}.Frame(make([]byte, size), 0)
			descs := make([]xsk.Desc, DefaultNapiBudget)
			b.ReportAllocs()
			b.ResetTimer()
			for done := 0; done < b.N; {
				k := min(DefaultNapiBudget, b.N-done)
				for range k {
					p.Deliver(frame)
				}
				p.Poll()
				n, _ := rx.Get(descs)
				tx.Put(descs[:n])
				for p.Kick() == unix.EAGAIN {
				}
				m, _ := comp.Get(addrs)
				fill.Put(addrs[:m])
				done += k
			}
			b.StopTimer()
			if sink.n != uint64(b.N) {
				b.Fatalf("sink got %d of %d", sink.n, b.N)
			}
			b.ReportMetric(2*float64(b.N)/b.Elapsed().Seconds(), "desc/s")
		})
	}
}
