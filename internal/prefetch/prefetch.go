// Package prefetch asks the CPU to bring cache lines towards L1
// (PREFETCHT0) ahead of their use. Unlike a load, a prefetch retires at
// once: a load that misses blocks the reorder buffer and so bounds how many
// misses are in flight, a prefetch does not, so the misses of a whole batch
// overlap instead of stalling one after the other. It never faults, so any
// address is safe. Go has no prefetch intrinsic for user code, hence a few
// lines of amd64 assembly; a call costs a few nanoseconds. Elsewhere the
// functions do nothing.
//
// The flow table prefetches the index slots of a batch of lookups; the
// AF_XDP sockets prefetch the first lines of a batch of received frames,
// which the kernel wrote on another core.
package prefetch
