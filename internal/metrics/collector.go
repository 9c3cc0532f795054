package metrics

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Source is what the Collector reads on each scrape. FromEngine adapts an
// *engine.Engine (a gate's is g.Engine); tests supply fakes.
type Source interface {
	Workers() []Worker
}

// Worker is one queue pair's counters.
type Worker interface {
	ID() int
	Accounting() engine.Accounting
	// Port returns the worker's socket on side s.
	Port(s engine.Side) Socket
	// PortStats returns the worker's counters for side s.
	PortStats(s engine.Side) *engine.PortStats
}

// Socket is the part of an AF_XDP socket the Collector reads; *xsk.Socket
// implements it. Rings may return nil rings, which are skipped.
type Socket interface {
	Ifname() string
	Queue() int
	Rings() (fill *xsk.FillRing, comp *xsk.CompRing, rx *xsk.RxRing, tx *xsk.TxRing)
	Stats() (xsk.Statistics, error)
}

var _ Socket = (*xsk.Socket)(nil)

// XDPSource is optional on a Source: how the gate's XDP program hands its
// record to user space, and the program's own counters per interface.
type XDPSource interface {
	Carrier() string
	// XDPCounters returns, per interface, meta_refused and no_headroom.
	XDPCounters() []XDPCounters
}

// LinkSource is optional on a Source: the state of the gate's links.
type LinkSource interface {
	Links() []Link
}

// Link is one watched link: side ("outer", "inner"), interface name, up,
// and how many times it went down.
type Link struct {
	Side, Ifname string
	Up           bool
	Downs        uint64
}

// XDPCounters are one interface's XDP program counters.
type XDPCounters struct {
	Iface                   string
	MetaRefused, NoHeadroom uint64
}

// FromEngine returns a Source reading e's workers.
func FromEngine(e *engine.Engine) Source { return engineSource{e} }

type engineSource struct{ e *engine.Engine }

func (s engineSource) Workers() []Worker {
	ws := s.e.Workers()
	out := make([]Worker, len(ws))
	for i, w := range ws {
		out[i] = engineWorker{w}
	}
	return out
}

type engineWorker struct{ w *engine.Worker }

func (w engineWorker) ID() int                                   { return w.w.ID() }
func (w engineWorker) Accounting() engine.Accounting             { return w.w.Accounting() }
func (w engineWorker) Port(s engine.Side) Socket                 { return w.w.Port(s) }
func (w engineWorker) PortStats(s engine.Side) *engine.PortStats { return &w.w.Stats[s] }
func (w engineWorker) Iterations() uint64                        { return w.w.Iterations() }

// heartbeat is optional on a Worker: its loop count (engine.Worker.Iterations).
type heartbeat interface{ Iterations() uint64 }

const ns = "xskgate_"

// withPort returns the per-socket labels followed by extra.
func withPort(extra ...string) []string { return append([]string{"iface", "queue"}, extra...) }

var (
	portLabels = withPort()

	descPackets = prometheus.NewDesc(ns+"packets_total",
		"Frames taken from RX (dir=rx) or put on TX (dir=tx).", withPort("dir"), nil)
	descBytes = prometheus.NewDesc(ns+"bytes_total",
		"Bytes taken from RX (dir=rx) or put on TX (dir=tx).", withPort("dir"), nil)
	descVerdicts = prometheus.NewDesc(ns+"verdicts_total",
		"Inspector verdicts on frames received on the side.", withPort("verdict"), nil)
	descDrops = prometheus.NewDesc(ns+"drops_total",
		"Frames dropped on the side, by reason.", withPort("reason"), nil)
	descKicks = prometheus.NewDesc(ns+"kicks_total",
		"TX wakeups (sendto) by result: ok, again (EAGAIN), busy (EBUSY: the device dropped a frame), error.",
		withPort("result"), nil)
	descCompletions = prometheus.NewDesc(ns+"completions_total",
		"Frames returned through the COMPLETION ring.", portLabels, nil)
	descFillEmpty = prometheus.NewDesc(ns+"fill_empty_total",
		"Times the FILL ring could not be topped up because no frame was free.", portLabels, nil)
	descFillWakeups = prometheus.NewDesc(ns+"fill_wakeups_total",
		"Times the worker woke a zero-copy driver that had run out of FILL buffers (NEED_WAKEUP on FILL, recvfrom).", portLabels, nil)
	descRing = prometheus.NewDesc(ns+"ring_entries",
		"Entries on the ring (producer - consumer).", withPort("ring"), nil)
	descXDP = prometheus.NewDesc(ns+"xdp_statistics_total",
		"The kernel's XDP_STATISTICS for the socket.", withPort("counter"), nil)
	descInfo = prometheus.NewDesc(ns+"socket_info",
		"One per socket: its interface name and worker.", withPort("ifname", "worker"), nil)
	descFrames = prometheus.NewDesc(ns+"frames",
		"The worker's UMEM frames by state: free, fill (posted to FILL, in the kernel or RX), tx (posted to TX, not completed), quarantined.",
		[]string{"worker", "state"}, nil)
	descSleeps = prometheus.NewDesc(ns+"sleeps_total",
		"Times the worker found no work and slept in poll.", []string{"worker"}, nil)
	descIterations = prometheus.NewDesc(ns+"worker_iterations_total",
		"The worker's heartbeat: loop iterations. It grows at least 20 times a second even when idle (poll times out after 50 ms); flat means the worker is stuck (frozen by the freeze policy, blocked in a syscall).",
		[]string{"worker"}, nil)
	descXDPErrors = prometheus.NewDesc(ns+"xdp_statistics_errors_total",
		"Scrapes that could not read a socket's XDP_STATISTICS (its series are then missing).", nil, nil)
	descMetaFallback = prometheus.NewDesc(ns+"meta_fallback_total",
		"Frames whose record came in front of the frame because the driver refused XDP metadata at run time.", portLabels, nil)
	descCsum = prometheus.NewDesc(ns+"checksums_completed_total",
		"TCP/UDP checksums received partial (the sender offloaded them): completed in software before forwarding, or by the kernel at TX (checksums_offloaded_total).", portLabels, nil)
	descCsumOffloaded = prometheus.NewDesc(ns+"checksums_offloaded_total",
		"Frames queued for TX asking the kernel to complete their partial checksum (AF_XDP TX metadata), counted on the sending port.", portLabels, nil)
	descCsumStale = prometheus.NewDesc(ns+"checksums_stale_total",
		"Partial checksums an Inspector rewrote without completing them first (a bug): sent as the Inspector left them, on the sending port.", portLabels, nil)
	descExtra = prometheus.NewDesc(ns+"extra_frames_total",
		"Spare frames the Inspector asked for to send a frame of its own (the SYN proxy's window update): sent, or refused (none to spare).",
		withPort("result"), nil)
	descCarrier = prometheus.NewDesc(ns+"xdp_record_carrier",
		"1 for how the XDP program hands the frame length to user space: meta (XDP metadata area), head (record in front of the frame, stripped in user space) or none (XDP-length check off).",
		[]string{"carrier"}, nil)
	descLinkUp = prometheus.NewDesc(ns+"link_up",
		"1 while the link is up (IFF_UP and operational state up); while 0, frames for it are dropped (drops_total reason=link_down).",
		[]string{"iface", "ifname"}, nil)
	descLinkDowns = prometheus.NewDesc(ns+"link_down_total",
		"Times the link went down while the gate ran.", []string{"iface", "ifname"}, nil)
	descXDPProg = prometheus.NewDesc(ns+"xdp_program_total",
		"The XDP program's own counters per interface: meta_refused (bpf_xdp_adjust_meta failed, record carried in front), no_headroom (frame dropped: no room for the record).",
		[]string{"ifname", "counter"}, nil)
)

var allDescs = []*prometheus.Desc{descPackets, descBytes, descVerdicts, descDrops, descKicks,
	descCompletions, descFillEmpty, descFillWakeups, descRing, descXDP, descInfo, descFrames, descSleeps, descXDPErrors,
	descMetaFallback, descCarrier, descXDPProg, descCsum, descCsumOffloaded, descCsumStale, descLinkUp, descLinkDowns, descExtra, descIterations}

// Collector is a prometheus.Collector over a Source.
type Collector struct {
	src       Source
	xdpErrors atomic.Uint64

	mu     sync.Mutex
	closed bool
	kickOK map[[2]int]uint64 // (worker, side) → last reported ok kicks
}

// NewCollector returns a Collector reading src on every scrape. The
// *Collector is a prometheus.Collector; keep it to Close it before the
// gate closes.
func NewCollector(src Source) *Collector {
	return &Collector{src: src, kickOK: map[[2]int]uint64{}}
}

// Close waits for a scrape in progress and makes later scrapes report
// nothing, so that the Source can be torn down. It is idempotent.
func (c *Collector) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
}

// Describe sends every metric's description.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the Source.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, w := range c.src.Workers() {
		wid := strconv.Itoa(w.ID())
		for _, side := range []engine.Side{engine.Outer, engine.Inner} {
			sock, st := w.Port(side), w.PortStats(side)
			if sock == nil || st == nil {
				continue
			}
			iface, q := side.String(), strconv.Itoa(sock.Queue())
			gauge(descInfo, 1, iface, q, sock.Ifname(), wid)

			counter(descPackets, st.RxPackets.Load(), iface, q, "rx")
			counter(descPackets, st.TxPackets.Load(), iface, q, "tx")
			counter(descBytes, st.RxBytes.Load(), iface, q, "rx")
			counter(descBytes, st.TxBytes.Load(), iface, q, "tx")
			for v := range st.Verdicts {
				counter(descVerdicts, st.Verdicts[v].Load(), iface, q, engine.Verdict(v).String())
			}
			for r := range st.Drops {
				counter(descDrops, st.Drops[r].Load(), iface, q, engine.DropReason(r).String())
			}
			// The worker counts a kick before its result, so read the
			// results first: the total then covers them all.
			again, busy, errs := st.KickAgain.Load(), st.KickBusy.Load(), st.KickErrors.Load()
			total := st.Kicks.Load()
			ok := uint64(0)
			if failed := again + busy + errs; total > failed {
				ok = total - failed
			}
			// A kick counted as ok here may turn out EAGAIN by the next
			// scrape; a counter must not go down.
			key := [2]int{w.ID(), int(side)}
			ok = max(ok, c.kickOK[key])
			c.kickOK[key] = ok
			counter(descKicks, ok, iface, q, "ok")
			counter(descKicks, again, iface, q, "again")
			counter(descKicks, busy, iface, q, "busy")
			counter(descKicks, errs, iface, q, "error")
			counter(descCompletions, st.Completed.Load(), iface, q)
			counter(descFillEmpty, st.FillEmpty.Load(), iface, q)
			counter(descFillWakeups, st.FillWakeups.Load(), iface, q)
			counter(descMetaFallback, st.MetaFallback.Load(), iface, q)
			counter(descCsum, st.ChecksumsCompleted.Load(), iface, q)
			counter(descCsumOffloaded, st.ChecksumsOffloaded.Load(), iface, q)
			counter(descCsumStale, st.ChecksumsStale.Load(), iface, q)
			counter(descExtra, st.ExtraSent.Load(), iface, q, "sent")
			counter(descExtra, st.ExtraRefused.Load(), iface, q, "refused")

			for i, r := range rings(sock) {
				if r != nil {
					p, cons := r.Indices()
					gauge(descRing, float64(p-cons), iface, q, ringNames[i])
				}
			}

			xs, err := sock.Stats()
			if err != nil {
				c.xdpErrors.Add(1)
				continue
			}
			for _, x := range []struct {
				name string
				v    uint64
			}{
				{"rx_dropped", xs.RxDropped},
				{"rx_invalid_descs", xs.RxInvalidDescs},
				{"tx_invalid_descs", xs.TxInvalidDescs},
				{"rx_ring_full", xs.RxRingFull},
				{"rx_fill_ring_empty_descs", xs.RxFillRingEmptyDescs},
				{"tx_ring_empty_descs", xs.TxRingEmptyDescs},
			} {
				counter(descXDP, x.v, iface, q, x.name)
			}
		}
		a := w.Accounting()
		gauge(descFrames, float64(a.Free), wid, "free")
		gauge(descFrames, float64(a.Fill), wid, "fill")
		gauge(descFrames, float64(a.Tx), wid, "tx")
		gauge(descFrames, float64(a.Quarantined), wid, "quarantined")
		// The engine counts sleeps on the outer port's stats only.
		if st := w.PortStats(engine.Outer); st != nil {
			counter(descSleeps, st.Wakeups.Load(), wid)
		}
		if hb, ok := w.(heartbeat); ok {
			counter(descIterations, hb.Iterations(), wid)
		}
	}
	counter(descXDPErrors, c.xdpErrors.Load())
	if ls, ok := c.src.(LinkSource); ok {
		for _, l := range ls.Links() {
			up := 0.0
			if l.Up {
				up = 1
			}
			gauge(descLinkUp, up, l.Side, l.Ifname)
			counter(descLinkDowns, l.Downs, l.Side, l.Ifname)
		}
	}
	if xs, ok := c.src.(XDPSource); ok {
		gauge(descCarrier, 1, xs.Carrier())
		for _, x := range xs.XDPCounters() {
			counter(descXDPProg, x.MetaRefused, x.Iface, "meta_refused")
			counter(descXDPProg, x.NoHeadroom, x.Iface, "no_headroom")
		}
	}
}

type indexed interface{ Indices() (prod, cons uint32) }

var ringNames = [4]string{"fill", "comp", "rx", "tx"}

// rings returns the socket's rings in ringNames order, nil where absent
// (a nil *FillRing must not become a non-nil interface).
func rings(s Socket) [4]indexed {
	var out [4]indexed
	fill, comp, rx, tx := s.Rings()
	if fill != nil {
		out[0] = fill
	}
	if comp != nil {
		out[1] = comp
	}
	if rx != nil {
		out[2] = rx
	}
	if tx != nil {
		out[3] = tx
	}
	return out
}
