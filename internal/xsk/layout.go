package xsk

// KernelOffsets are the ring offsets Linux 6.x returns from XDP_MMAP_OFFSETS
// on x86-64 (producer and consumer on their own cache lines). A kernel model
// lays its rings out the same way so that ring code cannot tell the
// difference.
var KernelOffsets = RingOffsets{Producer: 0, Consumer: 128, Flags: 196, Desc: 320}

// RingMemory allocates zeroed memory for a ring of size entries of entSize
// bytes laid out at KernelOffsets, as the kernel's vmalloc'd rings are.
func RingMemory(size, entSize uint32) []byte {
	// Back it with uint64s so the index words are 8-byte aligned like a
	// page-aligned mapping.
	n := KernelOffsets.Desc + uint64(size)*uint64(entSize)
	words := make([]uint64, (n+7)/8)
	return unsafeBytes(words, n)
}
