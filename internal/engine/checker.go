package engine

import "github.com/xskgate/xskgate/internal/xsk"

// Checker sees every hand-over of a frame between a worker and a ring, in
// batches, before the worker acts on it. One Checker per worker, called only
// from that worker: it needs no lock. side selects the worker's outer or
// inner port.
//
// Received and Completed mark entries that must not be trusted in bad
// (len(bad) == len(batch)); the worker quarantines those frames instead of
// using them. PostFill and PostTx return false for an entry that must not be
// posted (it would put a frame in two rings).
type Checker interface {
	PostFill(side Side, addrs []uint64, ok []bool)
	Received(side Side, descs []xsk.Desc, bad []bool) (nbad int)
	PostTx(side Side, descs []xsk.Desc, ok []bool)
	Completed(side Side, addrs []uint64, bad []bool) (nbad int)
	// Idle is called when the worker found nothing to do, for periodic
	// checks (counter reconciliation).
	Idle()
}
