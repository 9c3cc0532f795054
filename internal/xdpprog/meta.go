package xdpprog

import "encoding/binary"

// MetaSize is the number of metadata bytes the program writes in front of
// every frame. It must be a multiple of 4 and at most 252 for
// bpf_xdp_adjust_meta.
const MetaSize = 16

// MetaMagic identifies a Meta record: "XSK" followed by layout version 1.
const MetaMagic uint32 = 0x58534B01

// Byte offsets of the Meta fields inside the record.
const (
	metaOffMagic = 0
	metaOffLen   = 4
	metaOffSeq   = 8
	metaOffQueue = 12
)

// Meta is the record the XDP program places in front of a received frame.
type Meta struct {
	Magic uint32 // MetaMagic when the record was written by this program
	Len   uint32 // frame length (data_end - data) as the program saw it
	Seq   uint32 // per-queue sequence number, starting at 1
	Queue uint32 // rx_queue_index the frame arrived on
}

// ParseMeta decodes the MetaSize bytes that precede a received frame in the
// UMEM, that is b = umem[addr-MetaSize:addr]. It does not allocate. It
// panics if len(b) < MetaSize, like the encoding/binary accessors; callers
// slicing a UMEM get that guarantee from the headroom they configure.
func ParseMeta(b []byte) Meta {
	_ = b[MetaSize-1] // one bounds check for the four loads
	return Meta{
		Magic: binary.LittleEndian.Uint32(b[metaOffMagic:]),
		Len:   binary.LittleEndian.Uint32(b[metaOffLen:]),
		Seq:   binary.LittleEndian.Uint32(b[metaOffSeq:]),
		Queue: binary.LittleEndian.Uint32(b[metaOffQueue:]),
	}
}

// Valid reports whether the record carries MetaMagic. A frame whose
// bpf_xdp_adjust_meta failed has no record; the bytes in front of it are
// whatever the UMEM held before, and Valid is false (barring a stale record
// left by an earlier frame in the same chunk, which Seq exposes).
func (m Meta) Valid() bool { return m.Magic == MetaMagic }
