package engine

import "github.com/xskgate/xskgate/internal/xsk"

// Disposition is a Checker's decision about one ring entry.
type Disposition uint8

const (
	// Keep: the entry is sound; the worker uses it.
	Keep Disposition = iota
	// Free: drop the packet, but the frame is provably this worker's and
	// idle, so it goes back to the free list.
	Free
	// Quarantine: drop the packet and withhold the frame: it may be live
	// in another ring, or the entry stands for a frame the kernel lost.
	// It is counted, never reused.
	Quarantine
)

// Checker sees every hand-over of a frame between a worker and a ring, in
// batches, before the worker acts on it. There is one Checker per worker,
// called only from that worker: it needs no lock. side selects the
// worker's outer or inner port.
//
// Every method fills out (len(out) == len(batch)) and returns how many
// entries are not Keep. For FILL and TX, Free is treated as Quarantine: a
// frame refused on its way into a ring is already suspect.
type Checker interface {
	PostFill(side Side, addrs []uint64, out []Disposition) (nbad int)
	Received(side Side, descs []xsk.Desc, out []Disposition) (nbad int)
	PostTx(side Side, descs []xsk.Desc, out []Disposition) (nbad int)
	Completed(side Side, addrs []uint64, out []Disposition) (nbad int)
	// Spare: the worker takes frames off its free list for frames of the
	// Inspector's own (Extra), to leave by side's TX. A frame not kept
	// is quarantined, and the Inspector gets no frame.
	Spare(side Side, addrs []uint64, out []Disposition) (nbad int)
	// Idle is called when the worker found nothing to do, for periodic
	// work (counter reconciliation).
	Idle()
}
