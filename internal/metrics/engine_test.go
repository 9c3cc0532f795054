package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

// enginePort makes a fakeSocket an engine.Port.
type enginePort struct{ *fakeSocket }

func (enginePort) Kick() unix.Errno { return 0 }
func (enginePort) TxBatch() uint32  { return 32 }

func TestFromEngine(t *testing.T) {
	const frames = 256
	umem, err := xsk.UmemOn(make([]byte, frames*2048), xsk.UmemConfig{FrameSize: 2048, NumFrames: frames})
	if err != nil {
		t.Fatal(err)
	}
	pair := engine.Pair{Outer: enginePort{newFakeSocket(t, "eth0", 0)}, Inner: enginePort{newFakeSocket(t, "eth1", 0)}}
	e, err := engine.New(umem, []engine.Pair{pair}, engine.Config{Batch: 8})
	if err != nil {
		t.Fatal(err)
	}
	e.Workers()[0].Stats[engine.Inner].RxPackets.Add(5)
	e.Prime() // publishes the accounting once: one heartbeat

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(FromEngine(e)))
	got := gather(t, reg)
	if e.Workers()[0].Iterations() == 0 {
		t.Fatal("no heartbeat after Prime")
	}
	for k, v := range map[string]float64{
		"xskgate_frames{state=free,worker=0}":                           float64(e.Workers()[0].Accounting().Free),
		"xskgate_packets_total{dir=rx,iface=inner,queue=0}":             5,
		"xskgate_socket_info{iface=outer,ifname=eth0,queue=0,worker=0}": 1,
		"xskgate_worker_iterations_total{worker=0}":                     float64(e.Workers()[0].Iterations()),
	} {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}
