// Package integrity checks every hand-over of a UMEM frame between xskgate's
// workers and the AF_XDP rings, so that a frame in two rings at once (a user
// bug, or a kernel bug such as the veth NAPI race fixed by fa349e396e48) is
// caught at the first wrong descriptor, its packet dropped instead of
// forwarded corrupt, and evidence kept: a flight recorder dump, a pcapng of
// the frame, a frozen ftrace buffer. See afxdp-kernel-notes §13.
//
// # Concept
//
// [Checks] is one per gate (UMEM). [Checks.NewChecker] plugs into
// engine.Config.NewChecker and gives each worker a [Checker]; the engine
// calls its PostFill, Received, PostTx and Completed hooks with every batch
// before acting on it, and Idle when it has nothing to do.
//
// A Checker keeps one state byte per chunk of its worker's share, and
// allows exactly the transitions the engine's design uses:
//
//	state     meaning                               may go to
//	free      free list: never posted, or a post    FILL (PostFill), spare (Spare)
//	          the ring had no room for
//	FILL@s    posted to socket s's FILL             RX@s (Received)
//	RX@s      received on s: batch, Inspector, TX   TX (PostTx: forward, bounce),
//	          queue, or freed by a drop verdict     FILL (drop, recycled), spare
//	TX@s      posted to socket s's TX               completed@s (Completed)
//	completed back from s's COMPLETION: free list   FILL, spare
//	spare     taken for an Extra frame              TX, FILL (dropped: link down)
//	lost      FILL entry consumed, never returned   nothing
//
// Everything else is a violation: a post to FILL of a chunk in a ring
// (double_fill, fill_while_tx), to TX of a chunk in a ring (tx_not_owned)
// or of a free or completed one, which holds no frame (tx_free), an RX
// entry whose chunk is not in this socket's FILL (rx_not_in_fill,
// duplicate, stale_desc), a completion of a chunk not on this socket's TX
// (completion_not_sent), an Extra frame taken from a ring (tx_not_owned).
// The engine frees a dropped frame without a hook, so RX@s and spare also
// stand for "freed since", which is why they may go to FILL. A TX entry
// that stays on TX too long while its kernel completes others is reported
// once (tx_overdue, txage.go) and stays TX: a late completion is accepted.
//
// A chunk outside the share is a foreign_frame. Per socket, a deque holds the
// FILL entries in ring order: copy mode consumes FILL in order and produces
// RX in that order, so each RX descriptor must name the front. Before those,
// each RX descriptor is checked for the poison written at release
// (unwritten_slot) or all zeros (uninitialized_desc), then bounds (bad_addr:
// outside the UMEM or offset != RxOffset; bad_len; bad_options); after them,
// the 16 bytes of XDP metadata in front of it (bad_meta, meta_len_mismatch,
// seq_regression: the sequence must grow per socket) and the IP length
// (ip_length: counted and dropped, no evidence: malformed packets are
// ordinary Internet input, not descriptor faults).
//
// # Order, resynchronisation and stale descriptors
//
// An RX chunk in this socket's FILL but not at the front has two readings.
// The kernel skipped the entries ahead of it (an entry consumed and dropped,
// an invalid entry skipped silently, the race's leaked F1): they become Lost,
// one out_of_order names the expected and received chunks and the depth, and
// the order is resynchronised, so one fault is one violation. Or the
// descriptor is old: the previous descriptor repeated (duplicate), last lap's
// value of the slot (stale_desc), or metadata older than what was already
// received (seq_regression); then the chunk is still queued in the kernel and
// the FILL order is left alone. A descriptor at the front whose chunk holds
// no record at all (bad_meta without a magic) may be old too: what the
// chunk last held in front of its frame may be AF_XDP TX metadata (a
// checksum left to the kernel) or a cleared metadata area, which carry no
// sequence to compare, so the chunk is quarantined, not freed. An RX entry that names no usable chunk may
// or may not have consumed a FILL entry; the checker counts it as owed, and a
// skip of at most that many entries at the next good descriptor is
// attributed to it rather than reported again.
//
// FILL order holds only in copy mode. A zero-copy driver hands out buffers
// recycled into its pool (frames its XDP program dropped, frames that found
// the RX ring full) before new FILL entries, so on a socket bound in
// zero-copy (its XDP_OPTIONS, else Config.ZeroCopy) no deque is kept: a
// chunk in the socket's FILL may come in any order and just leaves it, and
// the order check cannot be switched on (Checks.Unavailable). With the
// order check switched off in copy mode the same holds: a chunk received
// out of order leaves the deque, the entries ahead of it stay (none is
// marked lost); when the check comes back on, the next good descriptor
// passes over what was skipped meanwhile without a report. Without the
// order only older metadata marks a descriptor as old. A FILL entry a
// zero-copy driver never returns is found by the reconciliation below.
//
// The engine's ring writes are verified, not assumed: what PostFill and
// PostTx approve is read back from the FILL and TX slots at the next hook, so
// the expected order is the ring's and an approved entry the ring had no room
// for returns to free.
//
// # Dispositions and frame accounting
//
// A violation on an RX entry whose chunk was this socket's next FILL entry
// returns Free: the chunk is provably the worker's and idle, only the packet
// is dropped. Anything else (a garbage address, a chunk live in another ring,
// a foreign chunk) returns Quarantine: the engine drops the packet, never
// reuses what the entry names, and counts it quarantined. The engine had
// counted the entry's FILL slot as outstanding; the kernel did consume a FILL
// entry for it, but wrote the frame elsewhere (a leaked F1, a stale address).
// Counting that slot as quarantined keeps free + FILL + TX + quarantined
// equal to the worker's share even though the real frame was lost inside the
// kernel. Entries the kernel consumed without producing any RX entry (Drop,
// skipped FILL entries) stay counted in the engine's FILL figure forever; the
// checker counts them as Lost (Stats). PostFill and PostTx vetoes return
// Quarantine; a disabled check reports nothing and returns Keep.
//
// # Evidence
//
// Each socket has a flightrec.Recorder of every hand-over (one clock read per
// batch). On a violation: a count per class, one slog line (at most 20 a
// second), the frame's bytes in a pcapng file in DumpDir with a comment
// (class, address, descriptor and XDP lengths, expected/got, worker, iface,
// queue, slot), all recorders merged into a dump file on the first violation
// and at most once a second after, and with Ftrace a marker in a private
// ftrace instance, frozen (and saved) on the first. Then the Policy: Drop,
// Freeze (the worker blocks in the hook until Unfreeze or Close; close the
// Checks before engine.Stop) or Panic.
//
// A storm of violations must not fill the disk nor keep the worker writing
// files: pcapng frames go through a token bucket per class
// (Config.CaptureRate, CaptureBurst), dumps are taken at most once a
// second, and every evidence file in DumpDir, those earlier runs left
// included, counts against Config.MaxBytes. A frame, dump or ftrace buffer
// that would go over the cap is not written, and the first refusal is
// logged once with the fix; detection, counting and logging go on.
// Everything not written is counted ([Checks.Evidence]).
//
// # Counter reconciliation
//
// About once a second of idleness, each socket's metadata sequence gaps
// (from the program's first number, 1) are compared with rx_dropped +
// rx_ring_full (XDP_STATISTICS), both counted from the socket's start. Gaps
// legitimately come from those drops (the program numbered the frame, the
// socket had no buffer or no RX room), from failed redirects (another queue,
// unbound socket: only xdp:xdp_redirect_err and veth rx_queue_N_drops see
// them), from frames the program numbered but passed, and from a sequence
// map shared with another interface. Lost frames of a kernel fault show up
// here too. An excess of gaps is logged and counted (Stats.Unexplained), not
// reported as a violation. The sequence must be per (interface, queue): with
// the program's non-atomic increment, a map shared by two interfaces can go
// backwards and look like seq_regression.
//
// # Concurrency
//
// A Checker is called only by its worker: its state array, deques and
// recorders' write side are the worker's, without locks; a worker never
// touches another's share (a chunk outside it is only reported). Checks'
// counters are atomic; SetEnabled is an atomic word read once per batch;
// Violations, Counts, Stats, DumpNow, Unfreeze and Close may be called from
// any goroutine. The slow path (report) takes a mutex and does I/O on the
// worker that found the violation.
//
// # Limits
//
// Aligned chunks only; the worker's share is derived like
// engine.New does (NumFrames split equally between the NewChecker calls).
// COMPLETION is a multiset (copy mode completes on skb free), so it is not
// order-checked. Metadata from a stale descriptor that sits at the front of
// the FILL order and carries no sequence (Metadata off) is indistinguishable
// from a fresh one.
package integrity
