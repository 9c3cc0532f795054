// Package xsk is xskgate's AF_XDP layer: the UMEM, the four rings and the
// sockets that share one UMEM across every queue of both interfaces.
//
// # Rings
//
// Each ring is single-producer, single-consumer, shared with the kernel
// through mmap'd memory. User space produces FILL and TX and consumes RX and
// COMPLETION. The protocol follows net/xdp/xsk_queue.h exactly:
//
//   - the producer loads the consumer index (acquire), writes slots only if
//     there is room, then stores the producer index (release);
//   - the consumer loads the producer index (acquire), reads slots, then
//     stores the consumer index (release) after its last slot read.
//
// Indices are free-running uint32; prod-cons (mod 2^32) is the fill level and
// slot i lives at i&(size-1). The other side's index is loaded only when the
// cached value falls short, and ours is published once per batch. There is no
// producer cancel: a caller never reserves more than it submits (libxdp has
// no cancel either; reservations that drift collapse veth TX).
//
// Every load of the other side's index is checked: 0 <= prod-cons <= size and
// the other side only moves forward. A violation is returned as *IndexError;
// it means the ring memory was scribbled on and nothing in it can be trusted.
//
// # Ownership
//
// A UMEM frame has exactly one owner at a time: the application, or one
// ring of one socket. Handing a frame to FILL or TX gives it away; it comes
// back only through RX (after FILL) or COMPLETION (after TX). The ring types
// make every hand-over an explicit call (Put on FILL and TX, Get on RX and
// COMPLETION) so that package integrity can check each one.
//
// # Concurrency
//
// A ring has exactly one user-space owner goroutine; nothing here locks.
// Counters read by metrics are the ring indices themselves, loaded atomically.
package xsk
