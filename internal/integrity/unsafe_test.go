package integrity

import (
	"sync/atomic"
	"unsafe"
)

// ptr points at an index word of a ring's memory (test kernel side).
func ptr(m []byte, off uint64) unsafe.Pointer { return unsafe.Pointer(&m[off]) }

func storeU32(m []byte, off uint64, v uint32) { atomic.StoreUint32((*uint32)(ptr(m, off)), v) }
