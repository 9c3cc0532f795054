package xsk

import (
	"unsafe"

	"github.com/xskgate/xskgate/internal/prefetch"
)

// Prefetch starts loading the first bytes of each descriptor's frame: the
// line before it (where a metadata record sits), its first line and the
// next (headers behind a prepended record). In copy mode the kernel wrote
// the frame on the core that runs the interface's NAPI, so the worker's
// first read of each frame is a miss to another core's cache; on a batch
// read one by one these misses were the worker's largest user-space cost
// (perf, one queue, 64-byte frames). Addresses outside the UMEM are
// skipped; the checks that reject such descriptors come later.
func (u *Umem) Prefetch(descs []Desc) {
	if len(u.Area) == 0 {
		return
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(u.Area)))
	size := uint64(len(u.Area))
	for _, d := range descs {
		a := d.Addr
		if u.cfg.Unaligned {
			a = unalignedOffset(a)
		}
		if a < 16 || a+128 > size {
			continue
		}
		p := base + uintptr(a)
		prefetch.Lines3(p-16, p, p+64)
	}
}
