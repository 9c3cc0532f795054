package metrics

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Ring memory for tests: producer at 0, consumer at 64, flags at 128,
// descriptors from 192, as a kernel mapping would lay them out.
var testOff = xsk.RingOffsets{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}

type fakeRingMem []byte

func (m fakeRingMem) set(prod, cons uint32) {
	binary.NativeEndian.PutUint32(m[testOff.Producer:], prod)
	binary.NativeEndian.PutUint32(m[testOff.Consumer:], cons)
}

type fakeSocket struct {
	ifname string
	queue  int
	fill   *xsk.FillRing
	comp   *xsk.CompRing
	rx     *xsk.RxRing
	tx     *xsk.TxRing
	mem    [4]fakeRingMem
	stats  xsk.Statistics
	err    error
}

func newFakeSocket(t *testing.T, ifname string, queue int) *fakeSocket {
	t.Helper()
	const size = 8
	s := &fakeSocket{ifname: ifname, queue: queue}
	for i := range s.mem {
		s.mem[i] = make(fakeRingMem, int(testOff.Desc)+size*16)
	}
	var err [4]error
	s.fill, err[0] = xsk.NewFillRing(s.mem[0], testOff, size)
	s.comp, err[1] = xsk.NewCompRing(s.mem[1], testOff, size)
	s.rx, err[2] = xsk.NewRxRing(s.mem[2], testOff, size)
	s.tx, err[3] = xsk.NewTxRing(s.mem[3], testOff, size)
	if e := errors.Join(err[:]...); e != nil {
		t.Fatal(e)
	}
	return s
}

func (s *fakeSocket) Ifname() string { return s.ifname }
func (s *fakeSocket) Queue() int     { return s.queue }
func (s *fakeSocket) Rings() (*xsk.FillRing, *xsk.CompRing, *xsk.RxRing, *xsk.TxRing) {
	return s.fill, s.comp, s.rx, s.tx
}
func (s *fakeSocket) Stats() (xsk.Statistics, error) { return s.stats, s.err }

type fakeWorker struct {
	id    int
	acct  engine.Accounting
	socks [2]*fakeSocket
	stats [2]engine.PortStats
}

func (w *fakeWorker) ID() int                                   { return w.id }
func (w *fakeWorker) Accounting() engine.Accounting             { return w.acct }
func (w *fakeWorker) Port(s engine.Side) Socket                 { return w.socks[s] }
func (w *fakeWorker) PortStats(s engine.Side) *engine.PortStats { return &w.stats[s] }

type fakeSource []*fakeWorker

func (f fakeSource) Workers() []Worker {
	out := make([]Worker, len(f))
	for i, w := range f {
		out[i] = w
	}
	return out
}

// gather scrapes reg into "name{k=v,...}" → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			key := mf.GetName() + "{" + strings.Join(ls, ",") + "}"
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				out[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func newFake(t *testing.T) fakeSource {
	w := &fakeWorker{id: 0, acct: engine.Accounting{Total: 100, Free: 50, Fill: 30, Tx: 15, Quarantined: 5}}
	w.socks[engine.Outer] = newFakeSocket(t, "eth0", 0)
	w.socks[engine.Inner] = newFakeSocket(t, "eth1", 0)
	o := &w.stats[engine.Outer]
	o.RxPackets.Store(10)
	o.RxBytes.Store(1000)
	o.TxPackets.Store(2)
	o.TxBytes.Store(120)
	o.Verdicts[engine.Forward].Store(7)
	o.Verdicts[engine.Bounce].Store(2)
	o.Verdicts[engine.Drop].Store(1)
	o.Drops[engine.DropVerdict].Store(1)
	o.Drops[engine.DropViolation].Store(3)
	o.Kicks.Store(10)
	o.KickAgain.Store(2)
	o.KickBusy.Store(1)
	o.KickErrors.Store(1)
	o.Completed.Store(2)
	o.FillEmpty.Store(4)
	o.FillWakeups.Store(6)
	o.Wakeups.Store(9)
	w.socks[engine.Outer].mem[0].set(100, 96) // fill: 4 posted
	w.socks[engine.Outer].mem[2].set(7, 5)    // rx: 2 waiting
	w.socks[engine.Outer].mem[3].set(3, 1)    // tx: 2 waiting
	w.socks[engine.Outer].stats = xsk.Statistics{RxDropped: 11, RxInvalidDescs: 12, TxInvalidDescs: 13,
		RxRingFull: 14, RxFillRingEmptyDescs: 15, TxRingEmptyDescs: 16}
	w.socks[engine.Inner].err = errors.New("closed")

	w1 := &fakeWorker{id: 1}
	w1.socks[engine.Outer] = newFakeSocket(t, "eth0", 1)
	w1.socks[engine.Inner] = newFakeSocket(t, "eth1", 1)
	return fakeSource{w, w1}
}

func TestCollectorValues(t *testing.T) {
	src := newFake(t)
	c := NewCollector(src)
	reg := prometheus.NewPedanticRegistry() // checks Describe against Collect
	reg.MustRegister(c)
	got := gather(t, reg)

	want := map[string]float64{
		"xskgate_packets_total{dir=rx,iface=outer,queue=0}":                                  10,
		"xskgate_packets_total{dir=tx,iface=outer,queue=0}":                                  2,
		"xskgate_bytes_total{dir=rx,iface=outer,queue=0}":                                    1000,
		"xskgate_bytes_total{dir=tx,iface=outer,queue=0}":                                    120,
		"xskgate_verdicts_total{iface=outer,queue=0,verdict=forward}":                        7,
		"xskgate_verdicts_total{iface=outer,queue=0,verdict=bounce}":                         2,
		"xskgate_verdicts_total{iface=outer,queue=0,verdict=drop}":                           1,
		"xskgate_drops_total{iface=outer,queue=0,reason=verdict}":                            1,
		"xskgate_drops_total{iface=outer,queue=0,reason=tx_ring_full}":                       0,
		"xskgate_drops_total{iface=outer,queue=0,reason=invalid_desc}":                       0,
		"xskgate_drops_total{iface=outer,queue=0,reason=violation}":                          3,
		"xskgate_kicks_total{iface=outer,queue=0,result=ok}":                                 6,
		"xskgate_kicks_total{iface=outer,queue=0,result=again}":                              2,
		"xskgate_kicks_total{iface=outer,queue=0,result=busy}":                               1,
		"xskgate_kicks_total{iface=outer,queue=0,result=error}":                              1,
		"xskgate_completions_total{iface=outer,queue=0}":                                     2,
		"xskgate_fill_empty_total{iface=outer,queue=0}":                                      4,
		"xskgate_fill_wakeups_total{iface=outer,queue=0}":                                    6,
		"xskgate_ring_entries{iface=outer,queue=0,ring=fill}":                                4,
		"xskgate_ring_entries{iface=outer,queue=0,ring=comp}":                                0,
		"xskgate_ring_entries{iface=outer,queue=0,ring=rx}":                                  2,
		"xskgate_ring_entries{iface=outer,queue=0,ring=tx}":                                  2,
		"xskgate_frames{state=free,worker=0}":                                                50,
		"xskgate_frames{state=fill,worker=0}":                                                30,
		"xskgate_frames{state=tx,worker=0}":                                                  15,
		"xskgate_frames{state=quarantined,worker=0}":                                         5,
		"xskgate_sleeps_total{worker=0}":                                                     9,
		"xskgate_socket_info{iface=outer,ifname=eth0,queue=0,worker=0}":                      1,
		"xskgate_socket_info{iface=inner,ifname=eth1,queue=1,worker=1}":                      1,
		"xskgate_xdp_statistics_total{counter=rx_dropped,iface=outer,queue=0}":               11,
		"xskgate_xdp_statistics_total{counter=rx_invalid_descs,iface=outer,queue=0}":         12,
		"xskgate_xdp_statistics_total{counter=tx_invalid_descs,iface=outer,queue=0}":         13,
		"xskgate_xdp_statistics_total{counter=rx_ring_full,iface=outer,queue=0}":             14,
		"xskgate_xdp_statistics_total{counter=rx_fill_ring_empty_descs,iface=outer,queue=0}": 15,
		"xskgate_xdp_statistics_total{counter=tx_ring_empty_descs,iface=outer,queue=0}":      16,
		"xskgate_xdp_statistics_total{counter=rx_dropped,iface=outer,queue=1}":               0,
		"xskgate_xdp_statistics_errors_total{}":                                              1,
	}
	for k, v := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing %s", k)
		} else if g != v {
			t.Errorf("%s = %v, want %v", k, g, v)
		}
	}
	// The inner socket of worker 0 failed XDP_STATISTICS: its series are
	// missing, everything else of it is there.
	if _, ok := got["xskgate_xdp_statistics_total{counter=rx_dropped,iface=inner,queue=0}"]; ok {
		t.Error("series for a socket whose statistics failed")
	}
	if _, ok := got["xskgate_packets_total{dir=rx,iface=inner,queue=0}"]; !ok {
		t.Error("inner queue 0 packets missing")
	}

	// Series count is fixed by the queue count: per socket 1 info + 4
	// packets/bytes + 3 verdicts + 6 drops + 4 kicks + 7 + 2 extra frames +
	// 4 rings + 6 xdp = 37 (31 without xdp), per worker 4 frames + 1
	// sleeps, plus 1 error counter.
	if n, want := len(got), 3*37+31+2*5+1; n != want {
		t.Errorf("%d series, want %d:\n%s", n, want, strings.Join(slices.Sorted(maps.Keys(got)), "\n"))
	}
}

func TestLabelSets(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(newFake(t)))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string][]string{
		"iface":   {"outer", "inner"},
		"dir":     {"rx", "tx"},
		"verdict": {"forward", "bounce", "drop"},
		"reason":  {"verdict", "tx_ring_full", "invalid_desc", "violation", "no_record", "link_down"},
		"result":  {"ok", "again", "busy", "error", "sent", "refused"},
		"ring":    {"fill", "comp", "rx", "tx"},
		"state":   {"free", "fill", "tx", "quarantined"},
		"counter": {"rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full", "rx_fill_ring_empty_descs", "tx_ring_empty_descs", "meta_refused", "no_headroom"},
		"carrier": {"meta", "head", "none"},
		"queue":   {"0", "1"},
		"worker":  {"0", "1"},
		"ifname":  {"eth0", "eth1"},
	}
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "xskgate_") {
			t.Errorf("metric %s lacks the xskgate_ prefix", mf.GetName())
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				vals, ok := allowed[l.GetName()]
				if !ok || !slices.Contains(vals, l.GetValue()) {
					t.Errorf("%s: label %s=%q not in the bounded set", mf.GetName(), l.GetName(), l.GetValue())
				}
			}
		}
	}
}

func TestKicksOKMonotonic(t *testing.T) {
	src := newFake(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src))
	const key = "xskgate_kicks_total{iface=outer,queue=0,result=ok}"
	if v := gather(t, reg)[key]; v != 6 {
		t.Fatalf("ok = %v, want 6", v)
	}
	// A kick the last scrape counted as ok turns out EAGAIN.
	src[0].stats[engine.Outer].KickAgain.Add(1)
	if v := gather(t, reg)[key]; v != 6 {
		t.Fatalf("ok went to %v: a counter must not go down", v)
	}
	src[0].stats[engine.Outer].Kicks.Add(3)
	if v := gather(t, reg)[key]; v != 8 {
		t.Fatalf("ok = %v, want 8", v)
	}
}

func TestCollectorClose(t *testing.T) {
	c := NewCollector(newFake(t))
	reg := NewRegistry(c)
	c.Close()
	c.Close()
	for k := range gather(t, reg) {
		if strings.HasPrefix(k, "xskgate_") {
			t.Fatalf("closed collector reported %s", k)
		}
	}
}

func TestNilRingsSkipped(t *testing.T) {
	src := newFake(t)
	s := src[1].socks[engine.Outer]
	s.fill, s.tx = nil, nil
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(src))
	got := gather(t, reg)
	for _, r := range []string{"fill", "tx"} {
		if _, ok := got[fmt.Sprintf("xskgate_ring_entries{iface=outer,queue=1,ring=%s}", r)]; ok {
			t.Errorf("ring %s reported though absent", r)
		}
	}
	if _, ok := got["xskgate_ring_entries{iface=outer,queue=1,ring=rx}"]; !ok {
		t.Error("rx ring missing")
	}
}

// xdpFake adds the gate's XDP side to a fake source.
type xdpFake struct{ fakeSource }

func (xdpFake) Carrier() string { return "head" }
func (xdpFake) XDPCounters() []XDPCounters {
	return []XDPCounters{{Iface: "eth0", MetaRefused: 3, NoHeadroom: 1}, {Iface: "eth1"}}
}

// TestCarrierMetrics: the carrier chosen at start is a gauge labelled by
// carrier, and the XDP program's own counters are exported per interface.
func TestCarrierMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(xdpFake{newFake(t)}))
	got := gather(t, reg)
	for k, v := range map[string]float64{
		"xskgate_xdp_record_carrier{carrier=head}":                    1,
		"xskgate_xdp_program_total{counter=meta_refused,ifname=eth0}": 3,
		"xskgate_xdp_program_total{counter=no_headroom,ifname=eth0}":  1,
		"xskgate_xdp_program_total{counter=no_headroom,ifname=eth1}":  0,
		"xskgate_meta_fallback_total{iface=outer,queue=0}":            0,
		"xskgate_extra_frames_total{iface=outer,queue=0,result=sent}": 0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}

// linkFake adds the gate's links to a fake source.
type linkFake struct{ fakeSource }

func (linkFake) Links() []Link {
	return []Link{{Side: "outer", Ifname: "eth0", Up: true}, {Side: "inner", Ifname: "eth1", Up: false, Downs: 2}}
}

// TestLinkMetrics: each link's state is a gauge, its downs a counter, and
// frames dropped for a down link are a drop reason.
func TestLinkMetrics(t *testing.T) {
	src := linkFake{newFake(t)}
	src.fakeSource[0].stats[engine.Inner].Drops[engine.DropLinkDown].Store(7)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(src))
	got := gather(t, reg)
	for k, v := range map[string]float64{
		"xskgate_link_up{iface=outer,ifname=eth0}":                  1,
		"xskgate_link_up{iface=inner,ifname=eth1}":                  0,
		"xskgate_link_down_total{iface=inner,ifname=eth1}":          2,
		"xskgate_link_down_total{iface=outer,ifname=eth0}":          0,
		"xskgate_drops_total{iface=inner,queue=0,reason=link_down}": 7,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
}
