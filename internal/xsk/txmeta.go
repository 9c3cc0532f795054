package xsk

import "encoding/binary"

// TxMetadata is struct xsk_tx_metadata as far as xskgate uses it: the
// flags and the checksum request, at the start of the TX metadata area
// before a frame (Umem.TxMetadataLen bytes). Layout: u64 flags; request
// {u16 csum_start, u16 csum_offset; u64 launch_time, read only with its
// flag}, in the host's byte order.
type TxMetadata struct {
	Flags                 uint64
	CsumStart, CsumOffset uint16 // from the frame's start; from CsumStart
}

// XDP_TXMD_FLAGS_*.
const (
	TxmdTimestamp  = 1
	TxmdChecksum   = 2
	TxmdLaunchTime = 4
	txmdValid      = TxmdTimestamp | TxmdChecksum | TxmdLaunchTime
)

// ReadTxMetadata reads the struct at the start of area, the metadata area
// before a frame.
func ReadTxMetadata(area []byte) TxMetadata {
	return TxMetadata{
		Flags:      binary.NativeEndian.Uint64(area[0:]),
		CsumStart:  binary.NativeEndian.Uint16(area[8:]),
		CsumOffset: binary.NativeEndian.Uint16(area[10:]),
	}
}

func (m TxMetadata) put(area []byte) {
	binary.NativeEndian.PutUint64(area[0:], m.Flags)
	binary.NativeEndian.PutUint16(area[8:], m.CsumStart)
	binary.NativeEndian.PutUint16(area[10:], m.CsumOffset)
}

// Valid says whether the kernel takes m for a frame of n bytes
// (xsk_skb_metadata): known flags only, and a checksum request whose
// field lies within the frame. It answers EINVAL otherwise, with the
// descriptor left on TX and its address completed on every retry.
func (m TxMetadata) Valid(n uint32) bool {
	if m.Flags&^txmdValid != 0 {
		return false
	}
	return m.Flags&TxmdChecksum == 0 || uint32(m.CsumStart)+uint32(m.CsumOffset)+2 <= n
}
