package flow

import (
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugeMin is the arena size from which New maps memory itself.
const hugeMin = 8 << 20

const hugePage = 2 << 20

// arena is the table's bulk memory. Large tables map it outside the Go heap
// and ask for transparent huge pages (MADV_HUGEPAGE): a lookup in a 1M-flow
// table touches two random cache lines in ~120 MB, and with 4 KiB pages
// both also miss the TLB, which costs a page walk per access. The memory
// holds no Go pointers, so the collector need not see it. Small tables, or
// a failed mmap, use the heap.
type arena struct {
	buf []byte
	raw []byte // the whole mapping, nil for heap memory
}

func newArena(size int) arena {
	if size >= hugeMin {
		n := (size + hugePage - 1) &^ (hugePage - 1)
		// Over-map by a huge page so the start can be 2 MiB aligned.
		b, err := unix.Mmap(-1, 0, n+hugePage, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err == nil {
			off := (hugePage - int(uintptr(unsafe.Pointer(&b[0])))&(hugePage-1)) & (hugePage - 1)
			// Advice only: without THP the table works on 4 KiB pages.
			_ = unix.Madvise(b[off:off+n], unix.MADV_HUGEPAGE)
			return arena{buf: b[off : off+n : off+n], raw: b}
		}
	}
	return arena{buf: make([]byte, size)}
}

// release unmaps a mapped arena when its table becomes unreachable.
func (a arena) release(owner *Table) {
	if a.raw != nil {
		runtime.AddCleanup(owner, func(b []byte) { _ = unix.Munmap(b) }, a.raw)
	}
}

// carve returns n values of T from the arena at *off, 64-byte aligned.
func carve[T any](a arena, off *int, n int) []T {
	var zero T
	*off = (*off + 63) &^ 63
	s := unsafe.Slice((*T)(unsafe.Pointer(&a.buf[*off])), n)
	*off += n * int(unsafe.Sizeof(zero))
	return s
}
