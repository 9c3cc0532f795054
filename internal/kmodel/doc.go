// Package kmodel is a software model of the kernel side of AF_XDP sockets in
// copy mode, as on veth, or on a zero-copy driver, with deterministic fault
// injection. It lets
// xskgate's ring code, forwarding engine and integrity checks run unchanged
// in a plain `go test`, without root and without a kernel.
//
// # Concept
//
// A [Port] stands in for one *xsk.Socket bound to one (interface, queue) of a
// shared UMEM. It owns the memory of its four rings, laid out at
// xsk.KernelOffsets, and hands user space the same *xsk.FillRing,
// *xsk.CompRing, *xsk.RxRing and *xsk.TxRing views a real socket does
// ([Port.Rings]). It offers the methods of *xsk.Socket the engine uses
// (Rings, Kick, WakeRx, Stats, Ifname, Queue, TxBatch) with identical
// signatures.
//
// Only aligned mode is modelled: FILL entries are masked to their chunk base
// and RX descriptors always point at chunk_base + Headroom + 256
// (XDP_PACKET_HEADROOM), as copy mode does (xp_aligned_extract_addr,
// __xsk_rcv). Unaligned chunks and multi-buffer (XDP_PKT_CONTD chains) are
// not modelled.
//
// With Config.ZeroCopy the RX side is a zero-copy driver's instead
// (zerocopy.go): buffers taken from FILL ahead of the frames into a driver
// ring, recycled buffers (frames the XDP program dropped, Config.XDPDrop,
// or the RX ring had no room for) reused before new FILL entries, so RX
// need not follow FILL order; no copy (the frame lands in its buffer at
// Headroom + 256, the record in place around it); and NEED_WAKEUP on FILL
// when the driver runs out of buffers, after which it takes no frame until
// [Port.WakeRx]. TX stays copy mode's sendto.
//
// RX is a NAPI poll ([Port.Poll]), run either by the port's "softirq"
// goroutine ([Port.Start]) or synchronously by a test: frames queued by
// [Port.Deliver] (a wired peer's TX, a [Source]) are taken in batches of up
// to NapiBudget, each into the next FILL entry, and the RX producer and the
// FILL consumer are published once at the end of the poll, as xsk_flush()
// does from xdp_do_flush(). In front of every received frame the model
// writes the 16-byte record xskgate's XDP program writes (MetaMagic, Len,
// Seq, Queue; little endian).
//
// TX is [Port.Kick], which like sendto() in copy mode runs
// __xsk_generic_xmit on the caller's goroutine: at most TxBatch descriptors,
// validated like xp_validate_desc, each copied out and delivered to the peer
// (veth_xmit), its exact address written to COMPLETION. The TX ring's
// NEED_WAKEUP flag is set at creation and never cleared (xp_assign_dev in
// copy mode); FILL's is set only by a zero-copy driver out of buffers.
//
// [Wire] makes a veth pair of two ports. A [Source] generates sequenced
// Ethernet/IPv4/UDP frames and a [Sink] checks what arrives; both follow a
// [Traffic] pattern.
//
// # Invariants
//
// Without faults the model keeps the kernel's contract (net/xdp/xsk_queue.h):
// it consumes FILL in order and never past the producer, produces RX and
// COMPLETION only into slots user space released, publishes every index with
// a store-release after the slot accesses it covers, and counts
// xdp_statistics as Linux 6.18 does (see Stats). It never panics on what user
// space wrote: bad indices or descriptors are masked, validated or counted.
//
// With [Faults] it breaks the contract on purpose (at most one RX kind per frame),
// drawing from a PCG seeded with Faults.Seed. Decisions are drawn per frame
// (RX) or per descriptor (TX) in arrival order, so which frame numbers are
// hit depends only on the seed; when a test drives the port synchronously
// (Poll, Kick, ring operations in a fixed order) the whole [Injection] log
// replays exactly.
//
// # Concurrency
//
// Like the kernel, the model serialises NAPI polls of a port (one mutex) and
// sendto calls of a port (another, as xs->mutex). Ring indices are accessed
// with sync/atomic (sequentially consistent, hence acquire/release),
// descriptor slots and UMEM bytes plainly, ordered by those atomics: a
// fault-free run is clean under the race detector. Deliver is safe from any
// goroutine; the input queue is bounded like veth's ptr_ring and drops when
// full. Stats, Counters and Injected may be read at any time.
package kmodel
