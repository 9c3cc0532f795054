package xsk

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
)

// Mode selects how sockets bound to the UMEM move frames. It is a UMEM-wide
// choice: sockets that share the UMEM inherit the first socket's bind flags
// (the kernel refuses mode flags on a shared bind).
type Mode uint8

const (
	// ModeAuto lets the kernel try zero-copy and fall back to copy silently;
	// Socket.Options tells what it picked.
	ModeAuto Mode = iota
	// ModeCopy forces copy mode (XDP_COPY), the only mode veth has.
	ModeCopy
	// ModeZeroCopy forces zero-copy (XDP_ZEROCOPY); binding fails where the
	// driver lacks it.
	ModeZeroCopy
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeCopy:
		return "copy"
	case ModeZeroCopy:
		return "zerocopy"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// ParseMode parses "auto", "copy" or "zerocopy".
func ParseMode(s string) (Mode, error) {
	switch s {
	case "auto", "":
		return ModeAuto, nil
	case "copy":
		return ModeCopy, nil
	case "zerocopy", "zero-copy", "zc":
		return ModeZeroCopy, nil
	}
	return 0, fmt.Errorf("unknown bind mode %q: use auto, copy or zerocopy", s)
}

// UmemConfig describes the UMEM shared by every socket.
type UmemConfig struct {
	FrameSize uint32 // chunk size; aligned mode: a power of two in [2048, page size]. Default 4096.
	NumFrames uint32 // default 4096
	Headroom  uint32 // bytes the kernel leaves before each RX frame (beyond XDP_PACKET_HEADROOM)
	Unaligned bool   // XDP_UMEM_UNALIGNED_CHUNK_FLAG

	FillSize, CompSize uint32 // FILL and COMPLETION entries per (interface, queue); default 2048

	Mode         Mode
	NoNeedWakeup bool // disable XDP_USE_NEED_WAKEUP (on by default)

	// TxMetadata asks for TxMetadataLen bytes of AF_XDP TX metadata
	// before every TX frame (XDP_UMEM_TX_METADATA_LEN, Linux 6.11+), so
	// that a frame can ask the kernel to complete its checksum
	// (SetTxChecksum). A kernel that refuses the flag gets a UMEM
	// without it: Umem.TxMetadataLen says which.
	TxMetadata bool
}

// TxMetadataLen is the TX metadata area the UMEM asks for: struct
// xsk_tx_metadata as of Linux 6.15, a u64 of flags and a 16-byte request
// (csum_start, csum_offset, launch_time); 16 bytes before 6.15. The kernel
// finds the struct at addr - TxMetadataLen and reads launch_time only
// with its flag, so the larger area suits both.
const TxMetadataLen = 24

// OptTxMetadata is XDP_TX_METADATA, the TX descriptor option that makes
// the kernel read the TxMetadata before the frame.
const OptTxMetadata = 2

// PacketHeadroom is XDP_PACKET_HEADROOM: in copy mode the kernel puts a
// received frame at chunk + Headroom + PacketHeadroom.
const PacketHeadroom = 256

func (c *UmemConfig) setDefaults() {
	if c.FrameSize == 0 {
		c.FrameSize = 4096
	}
	if c.NumFrames == 0 {
		c.NumFrames = 4096
	}
	if c.FillSize == 0 {
		c.FillSize = 2048
	}
	if c.CompSize == 0 {
		c.CompSize = 2048
	}
}

// Validate checks the configuration against the kernel's rules
// (net/xdp/xdp_umem.c xdp_umem_reg) so that a bad value gets a clear error
// before any syscall.
func (c UmemConfig) Validate() error {
	c.setDefaults()
	page := uint32(os.Getpagesize())
	if c.FrameSize < 2048 || c.FrameSize > page {
		return fmt.Errorf("frame size %d invalid: must be between 2048 and the page size %d", c.FrameSize, page)
	}
	if !c.Unaligned && c.FrameSize&(c.FrameSize-1) != 0 {
		return fmt.Errorf("frame size %d invalid: must be a power of two (or use unaligned chunks)", c.FrameSize)
	}
	// The kernel reserves XDP_PACKET_HEADROOM plus room for an skb's
	// shared info (320 bytes on x86-64) and 128 bytes of slack.
	if maxHead := c.FrameSize - PacketHeadroom - 320 - 128; c.Headroom > maxHead {
		return fmt.Errorf("headroom %d too large for %d-byte frames: at most %d", c.Headroom, c.FrameSize, maxHead)
	}
	if c.NumFrames == 0 || uint64(c.NumFrames)*uint64(c.FrameSize) > 1<<40 {
		return fmt.Errorf("frame count %d invalid", c.NumFrames)
	}
	for _, s := range []struct {
		name string
		v    uint32
	}{{"fill ring", c.FillSize}, {"completion ring", c.CompSize}} {
		if s.v&(s.v-1) != 0 {
			return fmt.Errorf("%s size %d is not a power of two", s.name, s.v)
		}
	}
	if c.Mode > ModeZeroCopy {
		return fmt.Errorf("unknown bind mode %d", c.Mode)
	}
	return nil
}

// Umem is the packet memory every socket shares, and the sockets bound to it.
// The first socket opened registers it with the kernel; the others bind with
// XDP_SHARED_UMEM to that socket.
type Umem struct {
	// Area is the packet memory: NumFrames chunks of FrameSize bytes.
	Area []byte
	cfg  UmemConfig

	txMeta  uint32  // TX metadata bytes registered before each TX frame
	foreign bool    // memory from UmemOn: never registered with a kernel
	owner   *Socket // socket that registered the UMEM (XDP_UMEM_REG)
	socks   []*Socket
	unmap   func([]byte) error
}

// ErrClosed is returned by operations on a closed UMEM or socket.
var ErrClosed = errors.New("xsk: closed")

// TxMetadataLen is the TX metadata area registered before each TX frame:
// TxMetadataLen when the config asked for it and the kernel took it, else
// 0. Every TX descriptor then needs that many bytes before its address
// in its chunk (the kernel's xp_aligned_validate_desc).
func (u *Umem) TxMetadataLen() uint32 { return u.txMeta }

// Config returns the configuration with defaults applied.
func (u *Umem) Config() UmemConfig { return u.cfg }

// FrameSize is the chunk size.
func (u *Umem) FrameSize() uint32 { return u.cfg.FrameSize }

// NumFrames is the number of chunks.
func (u *Umem) NumFrames() uint32 { return u.cfg.NumFrames }

// RxOffset is where, inside its chunk, copy mode places a received frame:
// the configured headroom plus XDP_PACKET_HEADROOM.
func (u *Umem) RxOffset() uint64 { return uint64(u.cfg.Headroom) + PacketHeadroom }

// FrameAddr is the address of chunk i (what goes into FILL).
func (u *Umem) FrameAddr(i uint32) uint64 { return uint64(i) * uint64(u.cfg.FrameSize) }

// Chunk returns the chunk base of a descriptor address, and its index.
// Unaligned addresses carry the offset in their top 16 bits.
func (u *Umem) Chunk(addr uint64) (base uint64, index uint32) {
	if u.cfg.Unaligned {
		a := unalignedOffset(addr)
		index = uint32(a / uint64(u.cfg.FrameSize))
		return uint64(index) * uint64(u.cfg.FrameSize), index
	}
	// Aligned chunks are a power of two: a shift, not a 64-bit division
	// (tens of cycles, several times per frame on the data path).
	index = uint32(addr >> bits.TrailingZeros32(u.cfg.FrameSize))
	return addr &^ uint64(u.cfg.FrameSize-1), index
}

const (
	unalignedOffsetShift = 48
	unalignedAddrMask    = 1<<unalignedOffsetShift - 1
)

// unalignedOffset is where an unaligned-mode descriptor address points in
// the UMEM: its low 48 bits plus the offset carried in its top 16.
func unalignedOffset(addr uint64) uint64 {
	return (addr & unalignedAddrMask) + addr>>unalignedOffsetShift
}

// Frame returns the n bytes at descriptor address addr, or nil when they do
// not lie inside one chunk of the UMEM. It never panics on a bad address:
// descriptors come from the kernel and may be corrupt.
func (u *Umem) Frame(addr uint64, n uint32) []byte {
	a, fs := addr, uint64(u.cfg.FrameSize)
	off := a & (fs - 1)
	if u.cfg.Unaligned {
		a = unalignedOffset(addr)
		off = a % fs
	}
	if a >= uint64(len(u.Area)) || off+uint64(n) > fs {
		return nil
	}
	return u.Area[a : a+uint64(n) : a+uint64(n)]
}

// Sockets lists the open sockets bound to the UMEM, in the order opened.
func (u *Umem) Sockets() []*Socket { return u.socks }

// UmemOn wraps memory the caller owns (a kernel model's UMEM) as a Umem, so
// code that reads frames works on either. It cannot open sockets.
func UmemOn(area []byte, cfg UmemConfig) (*Umem, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	if uint64(len(area)) != uint64(cfg.NumFrames)*uint64(cfg.FrameSize) {
		return nil, fmt.Errorf("area of %d bytes is not %d frames of %d", len(area), cfg.NumFrames, cfg.FrameSize)
	}
	u := &Umem{Area: area, cfg: cfg, foreign: true, unmap: func([]byte) error { return nil }}
	if cfg.TxMetadata {
		u.txMeta = TxMetadataLen // the caller's kernel model takes it
	}
	return u, nil
}

// SetTxChecksum writes, in the TX metadata area before the frame at addr,
// a request that the kernel complete the frame's checksum: the
// ones'-complement sum from start (bytes from addr) to the frame's end,
// stored at start+offset. The field must hold the pseudo-header sum, as a
// stack's CHECKSUM_PARTIAL packet does. The TX descriptor then carries
// Options XDP_TX_METADATA. The UMEM must have a TX metadata area
// (TxMetadataLen > 0) and addr at least that far into its chunk.
func (u *Umem) SetTxChecksum(addr uint64, start, offset uint16) {
	if u.cfg.Unaligned {
		addr = unalignedOffset(addr)
	}
	TxMetadata{Flags: TxmdChecksum, CsumStart: start, CsumOffset: offset}.put(u.Area[addr-TxMetadataLen : addr : addr])
}
