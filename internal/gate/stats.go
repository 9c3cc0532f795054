package gate

import (
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

// PortSnapshot is one socket's counters, for the control socket and CLI.
type PortSnapshot struct {
	Iface string `json:"iface"`
	Side  string `json:"side"`
	Queue int    `json:"queue"`
	// BindMode is what the kernel granted this socket (XDP_OPTIONS):
	// "zero-copy" or "copy".
	BindMode string `json:"bind_mode"`
	// Rings are the socket's ring occupancies (producer - consumer, as
	// the metrics' xskgate_ring_entries) and sizes, read at the snapshot.
	Rings      RingLevels        `json:"rings"`
	RxPackets  uint64            `json:"rx_packets"`
	RxBytes    uint64            `json:"rx_bytes"`
	TxPackets  uint64            `json:"tx_packets"`
	TxBytes    uint64            `json:"tx_bytes"`
	Completed  uint64            `json:"completed"`
	Verdicts   map[string]uint64 `json:"verdicts"`
	Drops      map[string]uint64 `json:"drops"`
	Kicks      uint64            `json:"kicks"`
	KickAgain  uint64            `json:"kick_eagain"`
	KickBusy   uint64            `json:"kick_ebusy"`
	KickErrors uint64            `json:"kick_errors"`
	// KickStalled: kicks after which the kernel had taken nothing off TX
	// (the worker stops kicking until its next iteration); CompBatches:
	// COMPLETION batches taken; FillWakeups: recvfrom calls that woke a
	// zero-copy driver out of FILL buffers (NEED_WAKEUP on FILL).
	KickStalled uint64 `json:"kick_stalled"`
	CompBatches uint64 `json:"completion_batches"`
	FillWakeups uint64 `json:"fill_wakeups"`
	// MetaFallback: frames whose record came in front of the frame because
	// the driver refused XDP metadata at run time (carrier meta).
	MetaFallback uint64 `json:"meta_fallback"`
	// ChecksumsCompleted: partial TCP/UDP checksums (sender offload)
	// received, completed in software or by the kernel at TX.
	ChecksumsCompleted uint64 `json:"checksums_completed"`
	// ChecksumsOffloaded: frames queued for TX asking the kernel to complete a
	// partial checksum (AF_XDP TX metadata); ChecksumsStale: partial
	// checksums an Inspector rewrote without completing (a bug).
	ChecksumsOffloaded uint64 `json:"checksums_offloaded"`
	ChecksumsStale     uint64 `json:"checksums_stale,omitempty"`
	// ExtraSent, ExtraRefused: frames the Inspector sent of its own
	// (engine.Extra), and requests the worker had no spare frame for.
	ExtraSent    uint64         `json:"extra_sent"`
	ExtraRefused uint64         `json:"extra_refused"`
	XDP          xsk.Statistics `json:"xdp_statistics"`
}

// Snapshot is the gate's state for `xskgate stats`: how the XDP program
// hands over its record, its own counters per interface, and the workers.
type Snapshot struct {
	Carrier    string            `json:"carrier"`
	CarrierWhy string            `json:"carrier_why"`
	Programs   []ProgramSnapshot `json:"xdp_programs"`
	Links      []LinkStatus      `json:"links"`
	Workers    []WorkerSnapshot  `json:"workers"`
}

// ProgramSnapshot is one interface's XDP program counters.
type ProgramSnapshot struct {
	Iface string `json:"iface"`
	// MetaRefused: bpf_xdp_adjust_meta failed at run time, the record was
	// carried in front of the frame instead.
	MetaRefused uint64 `json:"meta_refused"`
	// NoHeadroom: frames dropped in XDP because no record could be
	// prepended either.
	NoHeadroom uint64 `json:"no_headroom"`
}

// Snapshot snapshots every counter. Safe while the gate runs.
func (g *Gate) Snapshot() Snapshot {
	return Snapshot{Carrier: g.carrier.String(), CarrierWhy: g.carrierWhy, Programs: g.ProgramCounters(), Links: g.Links(), Workers: g.Stats()}
}

// ProgramCounters reads the XDP programs' counters, outer first.
func (g *Gate) ProgramCounters() []ProgramSnapshot {
	var out []ProgramSnapshot
	for i, p := range g.progs {
		ps := ProgramSnapshot{Iface: [2]string{g.cfg.Outer, g.cfg.Inner}[i%2]}
		if c, err := p.Counters(); err == nil {
			ps.MetaRefused, ps.NoHeadroom = c.MetaRefused, c.NoHeadroom
		}
		out = append(out, ps)
	}
	return out
}

// WorkerSnapshot is one worker's ports and frames.
type WorkerSnapshot struct {
	Worker int               `json:"worker"`
	Ports  []PortSnapshot    `json:"ports"`
	Frames engine.Accounting `json:"frames"`
	// Iterations is the worker's heartbeat (engine.Worker.Iterations),
	// Sleeps the times it found no work and slept in poll.
	Iterations uint64 `json:"iterations"`
	Sleeps     uint64 `json:"sleeps"`
}

// RingLevels are a socket's four rings: entries on each and its size.
type RingLevels struct {
	Fill, Comp, RX, TX RingLevel
}

// RingLevel is one ring's occupancy; Size 0: the socket has no such ring.
type RingLevel struct {
	Entries uint32 `json:"entries"`
	Size    uint32 `json:"size"`
}

// ringed is what a port needs for its ring levels (*xsk.Socket has it).
type ringed interface {
	Rings() (*xsk.FillRing, *xsk.CompRing, *xsk.RxRing, *xsk.TxRing)
}

func ringLevels(p engine.Port) RingLevels {
	var out RingLevels
	r, ok := p.(ringed)
	if !ok {
		return out
	}
	level := func(prod, cons, size uint32) RingLevel { return RingLevel{Entries: prod - cons, Size: size} }
	fill, comp, rx, tx := r.Rings()
	if fill != nil {
		p, c := fill.Indices()
		out.Fill = level(p, c, fill.Size())
	}
	if comp != nil {
		p, c := comp.Indices()
		out.Comp = level(p, c, comp.Size())
	}
	if rx != nil {
		p, c := rx.Indices()
		out.RX = level(p, c, rx.Size())
	}
	if tx != nil {
		p, c := tx.Indices()
		out.TX = level(p, c, tx.Size())
	}
	return out
}

// Stats snapshots every counter. Safe while the gate runs.
func (g *Gate) Stats() []WorkerSnapshot {
	var out []WorkerSnapshot
	for _, w := range g.Engine.Workers() {
		ws := WorkerSnapshot{Worker: w.ID(), Frames: w.Accounting(), Iterations: w.Iterations(),
			Sleeps: w.Stats[engine.Outer].Wakeups.Load()}
		for _, side := range []engine.Side{engine.Outer, engine.Inner} {
			p := w.Port(side)
			st := &w.Stats[side]
			ps := PortSnapshot{
				Iface: p.Ifname(), Side: side.String(), Queue: p.Queue(), BindMode: g.BindMode(side, p.Queue()),
				KickStalled: st.KickStalled.Load(), CompBatches: st.CompBatches.Load(), FillWakeups: st.FillWakeups.Load(),
				RxPackets: st.RxPackets.Load(), RxBytes: st.RxBytes.Load(),
				TxPackets: st.TxPackets.Load(), TxBytes: st.TxBytes.Load(),
				Completed: st.Completed.Load(),
				Verdicts:  map[string]uint64{}, Drops: map[string]uint64{},
				Kicks: st.Kicks.Load(), KickAgain: st.KickAgain.Load(),
				KickBusy: st.KickBusy.Load(), KickErrors: st.KickErrors.Load(),
				MetaFallback: st.MetaFallback.Load(), ChecksumsCompleted: st.ChecksumsCompleted.Load(),
				ChecksumsOffloaded: st.ChecksumsOffloaded.Load(), ChecksumsStale: st.ChecksumsStale.Load(),
				ExtraSent: st.ExtraSent.Load(), ExtraRefused: st.ExtraRefused.Load(),
			}
			for v := engine.Forward; v <= engine.Drop; v++ {
				ps.Verdicts[v.String()] = st.Verdicts[v].Load()
			}
			for r := engine.DropReason(0); r < engine.NumDropReasons; r++ {
				ps.Drops[r.String()] = st.Drops[r].Load()
			}
			ps.XDP, _ = p.Stats()
			ps.Rings = ringLevels(p)
			ws.Ports = append(ws.Ports, ps)
		}
		out = append(out, ws)
	}
	return out
}
