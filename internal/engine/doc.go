// Package engine is xskgate's data path: workers that move frames between
// the outer and inner interfaces through AF_XDP rings on one shared UMEM.
//
// Worker q owns queue q of both interfaces: their FILL, COMPLETION, RX and
// TX rings, eight single-producer/single-consumer rings with exactly one
// user-space owner, so the data path takes no lock. Frames are partitioned
// between workers at start; a frame received on outer q is transmitted on
// inner q (or bounced on outer q), completes on that socket's COMPLETION
// ring and returns to the same worker's free list, so it never crosses
// workers.
//
// One iteration of a worker, per batch:
//
//  1. recycle COMPLETION entries of both ports into the free list;
//  2. refill both FILL rings from the free list (the kernel needs buffers
//     before it can receive);
//  3. take a batch from each RX ring, check each descriptor, and ask the
//     Inspector for a verdict: Forward (TX of the other port, same frame, no
//     copy), Bounce (TX of the same port) or Drop (back to the free list).
//     An Inspector that is an ExtraUser may also send frames of its own
//     in spare frames from the free list (Extra, extra.go);
//  4. put the TX batches on the TX rings and kick: in copy mode each sendto
//     moves at most TxBatch descriptors, so kick until the ring is drained,
//     EAGAIN says "later", EBUSY says the device dropped one (it completes).
//     While RX keeps delivering, the kick waits for a sendto's worth of
//     frames (or 8 loops without RX): a syscall per few frames was the
//     worker's largest cost after the kernel's own;
//  5. with nothing to do, spin briefly, then sleep in poll(2) on the RX
//     sockets (the kernel wakes it from xsk_flush).
//
// Every frame is accounted for at all times: free + posted to FILL (FILL,
// kernel, RX) + posted to TX (TX, kernel, COMPLETION) + held in the batch +
// quarantined = the worker's share. Accounting checks it.
package engine
