package kmodel

import (
	"errors"
	"fmt"
)

// Constants of the modelled kernel and XDP program.
const (
	// PacketHeadroom is XDP_PACKET_HEADROOM: copy mode puts a received frame
	// at chunk_base + Headroom + PacketHeadroom.
	PacketHeadroom = 256
	// MetaSize and MetaMagic describe the record xskgate's XDP program
	// writes in front of every frame it redirects (package xdpprog):
	// little-endian u32 Magic, Len, Seq, Queue.
	MetaSize  = 16
	MetaMagic = 0x58534B01
	// HeadMagic marks the same record prepended to the frame with
	// bpf_xdp_adjust_head (the head carrier).
	HeadMagic = 0x58534B81

	// DefaultNapiBudget is NAPI_POLL_WEIGHT, veth's poll budget.
	DefaultNapiBudget = 64
	// DefaultTxBudget is TX_BATCH_SIZE, the descriptors one copy-mode
	// sendto moves (XDP_MAX_TX_SKB_BUDGET raises it on 6.17+).
	DefaultTxBudget = 32
	// DefaultBacklog is VETH_RING_SIZE, the ptr_ring in front of a veth
	// receive queue.
	DefaultBacklog = 256
	// DefaultDriverRing is the modelled zero-copy driver's hardware RX
	// ring: the buffers it takes from FILL ahead of the frames.
	DefaultDriverRing = 64

	ringNeedWakeup = 1 // XDP_RING_NEED_WAKEUP

	optContd      = 1 // XDP_PKT_CONTD
	optTxMetadata = 2 // XDP_TX_METADATA
)

// Config describes one port.
type Config struct {
	// Umem is the packet memory shared with user space (and with the other
	// ports of the same UMEM): a whole number of FrameSize chunks.
	Umem      []byte
	FrameSize uint32 // chunk size, a power of two >= 2048; default 4096
	Headroom  uint32 // UMEM headroom (xdp_umem_reg.headroom)
	// TxMetadataLen is the UMEM's TX metadata area
	// (xdp_umem_reg.tx_metadata_len; 0: none, a multiple of 8 below 256).
	// With it, a TX descriptor with XDP_TX_METADATA may ask for its
	// checksum to be completed (XDP_TXMD_FLAGS_CHECKSUM), as copy mode's
	// CHECKSUM_PARTIAL skb gets it from the device: the peer receives the
	// frame with the sum in place (the UMEM is not written).
	TxMetadataLen uint32

	Ifname string // default "kmodel0"
	Queue  int

	// Ring sizes, powers of two; 0 means 2048.
	FillSize, CompSize, RxSize, TxSize uint32

	NapiBudget int    // frames per NAPI poll; default 64
	TxBudget   uint32 // descriptors per Kick; default 32
	Backlog    int    // input queue entries; default 256

	// Record is how the modelled XDP program hands its record over.
	Record Record

	// ZeroCopy models a zero-copy driver instead of copy mode (see
	// zerocopy.go): buffers are taken from FILL ahead of the frames into
	// a driver ring of DriverRing entries, buffers of frames the XDP
	// program dropped or the RX ring had no room for are recycled before
	// new FILL entries (so RX need not follow FILL order), the driver sets
	// NEED_WAKEUP on FILL and stops when it runs out of buffers until
	// WakeRx, and frames are not copied: each lands in its buffer at
	// Headroom + 256, the XDP program's record in place around it.
	ZeroCopy   bool
	DriverRing int // zero-copy driver ring entries; default 64
	// XDPDrop is the probability per frame that the modelled XDP program
	// drops it before writing its record (its first line): no RX
	// descriptor, no sequence number. In copy mode no buffer is taken; in
	// zero-copy the frame's buffer is recycled. Drawn from its own stream
	// seeded with Faults.Seed, so fault draws stay the same.
	XDPDrop float64

	Faults Faults
}

// Record is the modelled XDP program's record carrier (xdpprog.Carrier).
type Record uint8

const (
	// RecordMeta writes the record into the metadata area, right before
	// the frame (bpf_xdp_adjust_meta).
	RecordMeta Record = iota
	// RecordHead prepends it to the frame (bpf_xdp_adjust_head): the RX
	// descriptor covers record and frame.
	RecordHead
	// RecordNone writes no record.
	RecordNone
)

func (c *Config) setDefaults() {
	if c.FrameSize == 0 {
		c.FrameSize = 4096
	}
	if c.Ifname == "" {
		c.Ifname = "kmodel0"
	}
	for _, p := range []*uint32{&c.FillSize, &c.CompSize, &c.RxSize, &c.TxSize} {
		if *p == 0 {
			*p = 2048
		}
	}
	if c.NapiBudget == 0 {
		c.NapiBudget = DefaultNapiBudget
	}
	if c.TxBudget == 0 {
		c.TxBudget = DefaultTxBudget
	}
	if c.Backlog == 0 {
		c.Backlog = DefaultBacklog
	}
	if c.DriverRing == 0 {
		c.DriverRing = DefaultDriverRing
	}
}

func (c *Config) validate() error {
	fs := c.FrameSize
	if fs < 2048 || fs&(fs-1) != 0 {
		return fmt.Errorf("kmodel: frame size %d: aligned mode needs a power of two >= 2048", fs)
	}
	if len(c.Umem) == 0 || uint64(len(c.Umem))%uint64(fs) != 0 {
		return fmt.Errorf("kmodel: UMEM of %d bytes is not a whole number of %d-byte chunks", len(c.Umem), fs)
	}
	// Same bound as xdp_umem_reg: room for XDP_PACKET_HEADROOM, an skb's
	// shared info and 128 bytes of slack.
	if c.Headroom > fs-PacketHeadroom-320-128 {
		return fmt.Errorf("kmodel: headroom %d too large for %d-byte chunks", c.Headroom, fs)
	}
	if md := c.TxMetadataLen; md%8 != 0 || md >= 256 {
		return fmt.Errorf("kmodel: TX metadata length %d: must be a multiple of 8 below 256", md)
	}
	for _, r := range []struct {
		name string
		v    uint32
	}{{"fill", c.FillSize}, {"completion", c.CompSize}, {"rx", c.RxSize}, {"tx", c.TxSize}} {
		if r.v&(r.v-1) != 0 {
			return fmt.Errorf("kmodel: %s ring size %d is not a power of two", r.name, r.v)
		}
	}
	if c.NapiBudget < 1 || c.TxBudget < 1 || c.Backlog < 1 || c.DriverRing < 1 {
		return errors.New("kmodel: NapiBudget, TxBudget, Backlog and DriverRing must be positive")
	}
	if c.XDPDrop < 0 || c.XDPDrop > 1 {
		return fmt.Errorf("kmodel: XDP drop probability %v outside [0, 1]", c.XDPDrop)
	}
	return c.Faults.validate()
}

// FaultKind names an injected fault.
type FaultKind uint8

const (
	// VethRace is the stale-descriptor race fixed by fa349e396e48 ("veth:
	// Fix race with AF_XDP exposing old or uninitialized descriptors"): two
	// polls of one queue both take a FILL entry and write their descriptor
	// at the same cached RX producer; both flushes advance the producer. The
	// model takes FILL entries F1, F2 for this frame and the next one of the
	// poll, writes F1's descriptor at slot s, overwrites it with F2's, leaves
	// slot s+1 unwritten and publishes s+2: slot s+1 shows a stale
	// descriptor, F1 is leaked and this frame is lost.
	VethRace FaultKind = iota + 1
	// Duplicate produces the frame's descriptor in two consecutive slots.
	Duplicate
	// Drop consumes the FILL entry and never produces the frame (leaked).
	Drop
	// WrongLength writes a descriptor len different from the frame length
	// (the metadata keeps the true one).
	WrongLength
	// BadAddr writes an RX address beyond the UMEM or not at
	// chunk_base + Headroom + 256 (the frame goes to the real chunk, leaked).
	BadAddr
	// SkipFill consumes one FILL entry as if it were invalid: no counter
	// moves and the frame lands in the next entry.
	SkipFill
	// SpuriousCompletion adds a COMPLETION entry for a chunk that is not on
	// the TX ring, after a transmitted descriptor.
	SpuriousCompletion
	// LostCompletion transmits a descriptor and never writes its
	// COMPLETION entry: the frame is leaked on TX.
	LostCompletion
)

var faultNames = [...]string{"none", "veth-race", "duplicate", "drop", "wrong-length", "bad-addr", "skip-fill", "spurious-completion", "lost-completion"}

func (k FaultKind) String() string {
	if int(k) < len(faultNames) {
		return faultNames[k]
	}
	return fmt.Sprintf("fault(%d)", uint8(k))
}

// Faults configures fault injection. Each kind has a probability: per RX
// frame taken by a poll (at most one RX kind per frame) or, for
// SpuriousCompletion and LostCompletion, per transmitted descriptor. The zero value injects
// nothing and draws nothing.
type Faults struct {
	Seed uint64

	VethRace, Duplicate, Drop, WrongLength, BadAddr, SkipFill float64
	SpuriousCompletion, LostCompletion                        float64

	// Limit caps the number of injections, separately for RX and TX kinds
	// (each path draws on its own goroutine). 0 means no cap. Draws go on
	// after the cap, so the frames that would be hit stay the same.
	Limit int
}

func (f *Faults) rxProbs() [6]float64 {
	return [6]float64{f.VethRace, f.Duplicate, f.Drop, f.WrongLength, f.BadAddr, f.SkipFill}
}

func (f *Faults) validate() error {
	sum := 0.0
	for _, p := range f.rxProbs() {
		if p < 0 || p > 1 {
			return fmt.Errorf("kmodel: fault probability %v outside [0, 1]", p)
		}
		sum += p
	}
	if sum > 1 {
		return fmt.Errorf("kmodel: RX fault probabilities add up to %v > 1", sum)
	}
	for _, p := range []float64{f.SpuriousCompletion, f.LostCompletion} {
		if p < 0 || p > 1 {
			return fmt.Errorf("kmodel: fault probability %v outside [0, 1]", p)
		}
	}
	if f.Limit < 0 {
		return errors.New("kmodel: negative fault limit")
	}
	return nil
}

func (f *Faults) rxEnabled() bool {
	for _, p := range f.rxProbs() {
		if p > 0 {
			return true
		}
	}
	return false
}

// Injection records one injected fault.
type Injection struct {
	Kind FaultKind
	// N is the port's RX frame number (0-based, in the order polls took
	// frames off the input queue; the metadata Seq of frame N is N+1) or,
	// for SpuriousCompletion and LostCompletion, the TX descriptor number
	// (0-based, valid transmitted descriptors of this port).
	N uint64
	// Drawn is the frame whose fault draw decided the injection: N, except
	// for a VethRace drawn for a frame alone in its poll, which happens at
	// the next frame that has a successor. Drawn is what the seed fixes;
	// N and Slot then also depend on how the polls fell (timing).
	Drawn uint64
	// Slot is the free-running index of the first ring entry user space
	// finds wrong: an RX index for RX kinds (for Drop and SkipFill, the slot
	// the next produced descriptor takes; for VethRace, slot s holding F2
	// where F1 was due, s+1 being the stale one), a COMPLETION index for
	// SpuriousCompletion (LostCompletion: the slot it was due in).
	Slot uint32
	// Addr is the address written at Slot (RX descriptor or COMP entry); for
	// Drop and SkipFill, the FILL entry lost.
	Addr uint64
	// Len is the descriptor length written at Slot (RX kinds).
	Len uint32
	// Fill is the raw FILL entry the fault concerns: the one leaked by
	// VethRace (F1), Drop, SkipFill and BadAddr; the one delivered by
	// Duplicate and WrongLength.
	Fill uint64
}
