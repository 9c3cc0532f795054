package flow

import "net/netip"

// Dir is the physical direction a segment travelled through the gate.
type Dir uint8

const (
	// Inbound segments come from the outer (Internet) interface.
	Inbound Dir = iota
	// Outbound segments come from the inner (protected) interface.
	Outbound
)

func (d Dir) String() string {
	if d == Inbound {
		return "inbound"
	}
	return "outbound"
}

// TCP header flag bits as they appear in byte 13 of the header.
const (
	FlagFIN uint8 = 0x01
	FlagSYN uint8 = 0x02
	FlagRST uint8 = 0x04
	FlagPSH uint8 = 0x08
	FlagACK uint8 = 0x10
	FlagURG uint8 = 0x20
	FlagECE uint8 = 0x40
	FlagCWR uint8 = 0x80
)

// Segment is the part of a TCP segment the tracker needs. The packet parser
// fills it; the table never keeps a pointer to it.
type Segment struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	Flags            uint8 // FlagFIN ... FlagCWR
	Seq, Ack         uint32
	Window           uint16 // raw, unscaled
	WScale           int8   // window scale option, -1 when absent
	SACKPerm         bool
	PayloadLen       uint32
	Dir              Dir
}

// flag classes, the second index of the transition table (conntrack's
// TCP_*_SET from get_conntrack_index).
const (
	classSYN uint8 = iota
	classSYNACK
	classFIN
	classACK
	classRST
	classNone
	numClasses
)

var classNames = [numClasses]string{"syn", "synack", "fin", "ack", "rst", "none"}

// validFlags is tcp_valid_flags from tcp_error: indexed by the flags with
// ECE, CWR and PSH masked off. Everything else (bare FIN, SYN|FIN, null,
// Xmas, SYN|RST, ...) is malformed in any state.
var validFlags = func() (v [64]bool) {
	for _, f := range []uint8{
		FlagSYN, FlagSYN | FlagURG, FlagSYN | FlagACK,
		FlagRST, FlagRST | FlagACK,
		FlagFIN | FlagACK, FlagFIN | FlagACK | FlagURG,
		FlagACK, FlagACK | FlagURG,
	} {
		v[f] = true
	}
	return v
}()

const flagMask = FlagFIN | FlagSYN | FlagRST | FlagACK | FlagURG

// ValidFlags reports whether flags is a combination conntrack's tcp_error
// accepts (ECE, CWR and PSH are ignored).
func ValidFlags(flags uint8) bool { return validFlags[flags&flagMask] }

// flagClass follows get_conntrack_index: RST beats SYN(/ACK) beats FIN beats
// ACK.
func flagClass(f uint8) uint8 {
	switch {
	case f&FlagRST != 0:
		return classRST
	case f&FlagSYN != 0:
		if f&FlagACK != 0 {
			return classSYNACK
		}
		return classSYN
	case f&FlagFIN != 0:
		return classFIN
	case f&FlagACK != 0:
		return classACK
	}
	return classNone
}

// segEnd is segment_seq_plus_len: SYN and FIN each occupy one sequence
// number.
func segEnd(s *Segment) uint32 {
	end := s.Seq + s.PayloadLen
	if s.Flags&FlagSYN != 0 {
		end++
	}
	if s.Flags&FlagFIN != 0 {
		end++
	}
	return end
}

// before and after compare sequence numbers modulo 2^32 (RFC 9293 §3.4).
func before(a, b uint32) bool { return int32(a-b) < 0 }
func after(a, b uint32) bool  { return int32(b-a) < 0 }
