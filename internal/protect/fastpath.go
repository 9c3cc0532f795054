package protect

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// The fast path (xdpprog.FastPath): an established, assured flow is
// offloaded after the tracker accepted a segment of it, a SYN-proxied one
// with its sequence offset, which the fast path applies. From then on its
// plain segments cross the gate in the kernel (XDP hands them to a tc
// redirect) and never reach this stage; its
// SYN, FIN and RST still do, and the first of those takes it back
// (flow.Verdict.Unoffload). The tracker keeps the flow, with liberal
// windows, alive from the fast path's "last seen" (RunFastPath). What an
// operator gives up per offloaded flow is what nf_flow_table gives up:
// the window checks of its plain segments, and any rule change until the
// next reload (Reload takes every flow back, so new rules apply).

// FastPathConfig is the protection's fast path section:
//
//	fast_path:
//	  enabled: true  # offload established flows to the kernel (default false)
//	  flows: 65536   # room in the kernel map (about 100 bytes each)
type FastPathConfig struct {
	Enabled bool `yaml:"enabled"`
	Flows   int  `yaml:"flows"`
}

// fastSweepEvery is how often RunFastPath refreshes offloaded flows in the
// table and drops from the map those the table no longer offloads.
const fastSweepEvery = 5 * time.Second

type fastPath struct {
	fp *xdpprog.FastPath
	// counters: flows offloaded, released (back to user space), refused by
	// a full map, and failed map operations
	offloaded, released, full, errs atomic.Uint64
	n                               atomic.Int64 // flows in the map at the last sweep
	// lastSweep is xdpprog.Now at the last sweep (RunFastPath's alone).
	lastSweep int64
}

// SetFastPath makes the Inspector offload established flows to fp (nil:
// none). Call it before traffic flows, and run RunFastPath.
func (i *Inspector) SetFastPath(fp *xdpprog.FastPath) {
	if fp == nil {
		i.fast.Store(nil)
		return
	}
	i.fast.Store(&fastPath{fp: fp, lastSweep: xdpprog.Now()})
}

// flowOf is the segment's flow keyed as it arrives on outer, as the XDP
// maps key it (the first line's flow map and the fast path's).
func flowOf(s *flow.Segment) xdpprog.Flow {
	if s.Dir == flow.Outbound {
		return xdpprog.Flow{Src: s.Dst, Dst: s.Src, SrcPort: s.DstPort, DstPort: s.SrcPort}
	}
	return xdpprog.Flow{Src: s.Src, Dst: s.Dst, SrcPort: s.SrcPort, DstPort: s.DstPort}
}

// offer is called with every verdict of the tracker on w.seg: it queues a
// flow that came back for release, and an accepted segment's flow for
// offload if the table lets it go.
func (f *fastPath) offer(t *flow.Table, w *workerState, v flow.Verdict) {
	switch {
	case v.Unoffload:
		w.fast.Release(flowOf(w.seg))
	case v.Offloaded || v.Action != flow.Pass || v.Reason != flow.ReasonOk || v.State != flow.StateEstablished:
	case t.Offload(w.seg):
		// An established proxied flow has its real delta (the marker
		// gave way at the server's SYN-ACK, before it was established).
		w.fast.Offload(flowOf(w.seg), v.SeqAdjust)
	}
}

// flushFast applies a worker's queued changes (one or two syscalls).
// Flows the full map refused go back to the tracker.
func (i *Inspector) flushFast(f *fastPath, b *xdpprog.FastBatch) {
	rels := b.Releases()
	n, err := f.fp.Flush(b, func(fl xdpprog.Flow) {
		s := segOf(fl)
		i.table.Unoffload(&s)
		f.full.Add(1)
	}, func(fl xdpprog.Flow) bool {
		// Another worker (the flow's other direction: its FIN) or a
		// reload may have taken it back since this batch queued it.
		s := segOf(fl)
		return i.table.Offloaded(&s)
	})
	if err != nil {
		f.errs.Add(1)
	}
	f.offloaded.Add(uint64(n))
	f.released.Add(uint64(rels))
}

// segOf is a segment of fl (a key of the XDP maps), inbound, for table
// lookups: flowOf's inverse.
func segOf(fl xdpprog.Flow) flow.Segment {
	return flow.Segment{Src: fl.Src, Dst: fl.Dst, SrcPort: fl.SrcPort, DstPort: fl.DstPort, Dir: flow.Inbound}
}

// RunFastPath keeps the fast path's flows and the table in step until ctx
// ends: every few seconds, a flow the fast path carried since the last
// sweep is refreshed in the table, and one the table no longer has (or no
// longer offloads) leaves the map.
func (i *Inspector) RunFastPath(ctx context.Context) {
	t := time.NewTicker(fastSweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if f := i.fast.Load(); f != nil {
			i.sweepFast(f)
		}
	}
}

// sweepFast is one pass of RunFastPath.
func (i *Inspector) sweepFast(f *fastPath) {
	since := f.lastSweep
	f.lastSweep = xdpprog.Now()
	now := i.Now()
	kept, err := f.fp.Sweep(func(fl xdpprog.Flow, seen int64) bool {
		s := segOf(fl)
		return i.table.Touch(&s, now, seen >= since)
	})
	if err != nil {
		f.errs.Add(1)
	}
	f.n.Store(int64(kept))
}

// releaseFast takes every flow back from the fast path (a reload: new
// rules must see them). The flows are drained, not deleted: XDP hands
// their next segments to user space at once, the tc program still carries
// those already on their way to it, and the next sweep deletes the
// entries the table no longer offloads.
func (i *Inspector) releaseFast(f *fastPath) {
	n, err := f.fp.Drain(func(fl xdpprog.Flow) {
		s := segOf(fl)
		i.table.Unoffload(&s)
	})
	if err != nil {
		f.errs.Add(1)
	}
	f.released.Add(uint64(n))
	f.n.Store(0)
}

// FastPathStats are the fast path's counters for metrics and stats.
type FastPathStats struct {
	xdpprog.FastCounters
	// Flows is the number of offloaded flows at the last sweep.
	Flows, Capacity int
	// Offloaded and Released count flows handed to the fast path and
	// taken back (closing, or a reload); Full those the full map refused.
	Offloaded, Released, Full uint64
	Errors                    uint64
}

// FastPathStats reads the fast path's counters; ok is false without one.
func (i *Inspector) FastPathStats() (FastPathStats, bool) {
	f := i.fast.Load()
	if f == nil {
		return FastPathStats{}, false
	}
	c, err := f.fp.Counters()
	if err != nil {
		f.errs.Add(1)
	}
	return FastPathStats{FastCounters: c, Flows: int(f.n.Load()), Capacity: f.fp.Capacity(),
		Offloaded: f.offloaded.Load(), Released: f.released.Load(), Full: f.full.Load(), Errors: f.errs.Load()}, true
}
