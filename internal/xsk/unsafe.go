package xsk

import "unsafe"

// unsafeBytes views a uint64 slice as n bytes. The uint64 backing gives the
// alignment atomic index words need.
func unsafeBytes(w []uint64, n uint64) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(w))), n)
}
