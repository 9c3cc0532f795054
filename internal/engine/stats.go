package engine

import "sync/atomic"

// DropReason says why the engine dropped a frame.
type DropReason uint8

const (
	DropVerdict     DropReason = iota // the Inspector said Drop
	DropTxRingFull                    // no room on the TX ring: back-pressure from the kernel
	DropInvalidDesc                   // RX descriptor outside the UMEM or its chunk
	DropViolation                     // integrity violation: frame quarantined
	DropNoRecord                      // head carrier: the XDP program's record is missing, so the frame's first bytes are unknown
	DropLinkDown                      // the port's link is down (SetLinkDown): nothing is posted to its TX
	NumDropReasons
)

var dropNames = [NumDropReasons]string{"verdict", "tx_ring_full", "invalid_desc", "violation", "no_record", "link_down"}

func (r DropReason) String() string {
	if r < NumDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// PortStats are one port's counters. The worker adds to them once per batch;
// anyone may read them.
type PortStats struct {
	RxPackets, RxBytes atomic.Uint64
	TxPackets, TxBytes atomic.Uint64 // put on the TX ring
	Completed          atomic.Uint64 // came back through COMPLETION
	Verdicts           [numVerdicts]atomic.Uint64
	Drops              [NumDropReasons]atomic.Uint64
	Kicks              atomic.Uint64 // sendto calls
	KickAgain          atomic.Uint64 // EAGAIN: budget spent (kicked again while TX drains) or no room
	KickBusy           atomic.Uint64 // EBUSY: the device dropped a frame (it still completes)
	KickErrors         atomic.Uint64 // any other errno of a kick or FILL wakeup: counted, never fatal
	FillEmpty          atomic.Uint64 // times FILL could not be topped up: no free frame
	Wakeups            atomic.Uint64 // times the worker slept in poll
	// KickStalled counts kicks after which the kernel's TX consumer had not
	// moved (COMPLETION full, device busy, or a zero-copy driver sending
	// later): the worker stops kicking until its next iteration.
	KickStalled atomic.Uint64
	// CompBatches counts COMPLETION batches taken: several per iteration
	// when a drained TX completed more than one.
	CompBatches atomic.Uint64
	// FillWakeups counts recvfrom calls that woke a zero-copy driver which
	// had set NEED_WAKEUP on FILL (it ran out of buffers).
	FillWakeups atomic.Uint64
	// MetaFallback counts frames whose record came in front of the frame
	// although the carrier is the metadata area: the driver refused
	// bpf_xdp_adjust_meta at run time and the XDP program fell back.
	MetaFallback atomic.Uint64
	// ChecksumsCompleted counts TCP/UDP checksums received partial (the
	// sender offloaded them): completed in software before forwarding, or
	// by the kernel at TX (ChecksumsOffloaded, on the sending port).
	ChecksumsCompleted atomic.Uint64
	// ChecksumsOffloaded counts frames queued for TX with a request that
	// the kernel complete their partial checksum (TX metadata).
	ChecksumsOffloaded atomic.Uint64
	// ChecksumsStale counts frames whose partial checksum an Inspector
	// rewrote without Packet.CompleteChecksum: sent as they were (a bug).
	ChecksumsStale atomic.Uint64
	// ExtraSent counts frames the Inspector sent of its own out of this
	// port (Extra), ExtraRefused the times it asked for a spare frame and
	// the worker had none to spare.
	ExtraSent, ExtraRefused atomic.Uint64
}

// Accounting is where a worker's frames are. Total always equals the sum of
// the rest at the end of an iteration.
type Accounting struct {
	Total       int // frames given to the worker
	Free        int // on the free list
	Fill        int // posted to FILL and not yet back through RX: FILL, kernel, RX
	Tx          int // posted to TX and not yet back through COMPLETION
	Quarantined int // withheld after a violation: possibly live elsewhere
}

// Balanced reports whether every frame is accounted for.
func (a Accounting) Balanced() bool {
	return a.Free+a.Fill+a.Tx+a.Quarantined == a.Total
}

// accountingCell publishes a worker's Accounting for concurrent readers
// with a sequence lock: the worker is the only writer. It is written once
// per loop, so it is kept to few atomic writes (each a locked instruction
// on amd64): the counts go in pairs of 32 bits, the total once at start,
// and a loop that changed nothing only bumps the sequence (the heartbeat).
type accountingCell struct {
	seq              atomic.Uint64
	total            atomic.Int64
	freeFill, txQuar atomic.Uint64 // high 32 bits, low 32 bits
	last             Accounting    // the worker's own copy of what is published
}

func pack(hi, lo int) uint64 { return uint64(uint32(hi))<<32 | uint64(uint32(lo)) }

func unpack(v uint64) (hi, lo int) { return int(int32(v >> 32)), int(int32(v)) }

func (c *accountingCell) store(a Accounting) {
	if a == c.last {
		c.seq.Add(2)
		return
	}
	c.last = a
	c.seq.Add(1)
	if c.total.Load() != int64(a.Total) {
		c.total.Store(int64(a.Total))
	}
	c.freeFill.Store(pack(a.Free, a.Fill))
	c.txQuar.Store(pack(a.Tx, a.Quarantined))
	c.seq.Add(1)
}

func (c *accountingCell) load() Accounting {
	for {
		s := c.seq.Load()
		var a Accounting
		a.Total = int(c.total.Load())
		a.Free, a.Fill = unpack(c.freeFill.Load())
		a.Tx, a.Quarantined = unpack(c.txQuar.Load())
		if s&1 == 0 && c.seq.Load() == s {
			return a
		}
	}
}

// Iterations returns how many times the worker has run its loop (and
// published its accounting): a heartbeat that grows at least 20 times a second
// even when idle (the poll timeout), and stops when the worker is stuck
// (a frozen policy, a syscall that never returns, a deadlock). It costs
// the data path nothing: it is the publication's sequence count.
func (w *Worker) Iterations() uint64 { return w.acct.seq.Load() / 2 }
