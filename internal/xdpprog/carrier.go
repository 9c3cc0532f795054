package xdpprog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// Carrier is how the XDP program hands its Meta record (the frame length
// it saw, a per-queue sequence, the queue) to user space. Kernels differ in
// what they allow at load, and drivers in what they do at run time, so the
// gate probes and takes the best one available.
type Carrier uint8

const (
	// CarrierAuto, the zero value, asks ChooseCarrier for the best carrier
	// the kernel allows. Where a record is read (Locate) it accepts either
	// kind, as CarrierMeta does.
	CarrierAuto Carrier = iota
	// CarrierMeta writes the record into the XDP metadata area with
	// bpf_xdp_adjust_meta: it ends exactly at the RX descriptor's address
	// and the frame is untouched. If the driver refuses metadata at run
	// time (the helper fails), the program falls back to CarrierHead for
	// that frame, marked by HeadMagic; user space tells the two apart (see
	// Locate) and the program counts the fallbacks (Counters).
	CarrierMeta
	// CarrierHead prepends the record to the frame with
	// bpf_xdp_adjust_head: the RX descriptor starts with the record, and
	// user space strips it by moving the descriptor's address and length
	// (no copy) before the frame goes anywhere. Only bpf_xdp_adjust_head is
	// needed, which every XDP kernel has.
	CarrierHead
	// CarrierNone writes no record: the XDP-length check, the metadata
	// sequence and the sequence-gap reconciliation are off.
	CarrierNone
)

var carrierNames = [...]string{"auto", "meta", "head", "none"}

func (c Carrier) String() string {
	if int(c) < len(carrierNames) {
		return carrierNames[c]
	}
	return fmt.Sprintf("carrier(%d)", uint8(c))
}

// ParseCarrier accepts "auto", "meta", "head" and "none".
func ParseCarrier(s string) (Carrier, error) {
	for i, n := range carrierNames {
		if s == n {
			return Carrier(i), nil
		}
	}
	return 0, fmt.Errorf("unknown XDP record carrier %q: want auto, meta, head or none", s)
}

// Prefix is the number of bytes of record in front of the frame in an RX
// descriptor of a frame that carries its record by c (CarrierHead), which
// user space must strip before the frame goes anywhere.
func (c Carrier) Prefix() uint32 {
	if c == CarrierHead {
		return MetaSize
	}
	return 0
}

// HeadMagic marks a record prepended with bpf_xdp_adjust_head (layout as
// Meta): "XSK" followed by 0x81, so a record carried in front of the frame
// is never mistaken for one in the metadata area, and vice versa.
const HeadMagic uint32 = 0x58534B81

// Locate finds the record of the frame an RX descriptor (addr, n) names in
// area (the UMEM). off is addr's offset in its chunk: the metadata area is
// read only when it lies inside the chunk. It returns the record, the
// number of bytes to strip from the front of the descriptor (0 or
// MetaSize), and whether a record was found. It does not allocate.
//
// With CarrierMeta, the metadata area is tried first and a HeadMagic
// record in front of the frame second: that is the program's own fallback
// for a driver that refused bpf_xdp_adjust_meta. For the order to be
// unambiguous the metadata magic must not be stale: user space clears it
// before it posts the chunk to FILL (ClearMeta).
func (c Carrier) Locate(area []byte, addr uint64, n uint32, off uint64) (m Meta, strip uint32, ok bool) {
	switch c {
	case CarrierAuto, CarrierMeta:
		if off >= MetaSize && binary.LittleEndian.Uint32(area[addr-MetaSize:]) == MetaMagic {
			return ParseMeta(area[addr-MetaSize : addr]), 0, true
		}
		fallthrough
	case CarrierHead:
		if n >= MetaSize && binary.LittleEndian.Uint32(area[addr:]) == HeadMagic {
			return ParseMeta(area[addr : addr+MetaSize]), MetaSize, true
		}
	}
	return Meta{}, 0, false
}

// ClearMeta erases the magic of a record in the metadata area in front of
// the frame a chunk will receive at rxAddr, so that Locate cannot read a
// previous frame's record for it. Called for each chunk posted to FILL when
// the carrier is CarrierMeta.
func ClearMeta(area []byte, rxAddr uint64) {
	binary.LittleEndian.PutUint32(area[rxAddr-MetaSize:], 0)
}

// helperProbe reports whether XDP programs may call a helper, as
// features.HaveProgramHelper does; a parameter so tests can play kernels.
type helperProbe func(asm.BuiltinFunc) error

func helperName(fn asm.BuiltinFunc) string {
	switch fn {
	case asm.FnXdpAdjustMeta:
		return "bpf_xdp_adjust_meta"
	case asm.FnXdpAdjustHead:
		return "bpf_xdp_adjust_head"
	}
	return fn.String()
}

func kernelHelper(fn asm.BuiltinFunc) error { return features.HaveProgramHelper(ebpf.XDP, fn) }

// ChooseCarrier resolves want against the running kernel: CarrierAuto
// becomes the best carrier the kernel allows (meta, else head, else none);
// an explicit carrier the kernel refuses is an error naming the fix. why
// says, in a few words, why the choice fell where it did.
func ChooseCarrier(want Carrier) (c Carrier, why string, err error) {
	return chooseCarrier(want, kernelHelper)
}

func chooseCarrier(want Carrier, have helperProbe) (Carrier, string, error) {
	probe := func(fn asm.BuiltinFunc) (bool, error) {
		err := have(fn)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, ebpf.ErrNotSupported):
			return false, nil
		default:
			return false, fmt.Errorf("xdp support: probing the %s helper: %w", helperName(fn), err)
		}
	}
	switch want {
	case CarrierNone:
		return CarrierNone, "asked for", nil
	case CarrierMeta, CarrierHead:
		fn := asm.FnXdpAdjustMeta
		if want == CarrierHead {
			fn = asm.FnXdpAdjustHead
		}
		ok, err := probe(fn)
		if err != nil {
			return 0, "", err
		}
		if !ok {
			return 0, "", fmt.Errorf("xdp record carrier %s: the kernel refuses %s in XDP programs: use --carrier auto", want, helperName(fn))
		}
		return want, "asked for", nil
	case CarrierAuto:
		ok, err := probe(asm.FnXdpAdjustMeta)
		if err != nil {
			return 0, "", err
		}
		if ok {
			return CarrierMeta, "kernel allows bpf_xdp_adjust_meta", nil
		}
		ok, err = probe(asm.FnXdpAdjustHead)
		if err != nil {
			return 0, "", err
		}
		if ok {
			return CarrierHead, "kernel refuses bpf_xdp_adjust_meta in XDP programs", nil
		}
		return CarrierNone, "kernel refuses bpf_xdp_adjust_meta and bpf_xdp_adjust_head in XDP programs: the XDP-length check is off", nil
	}
	return 0, "", fmt.Errorf("xdp record carrier %s: unknown", want)
}
