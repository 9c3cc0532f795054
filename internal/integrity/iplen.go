package integrity

import "encoding/binary"

const (
	etherIPv4   = 0x0800
	etherIPv6   = 0x86dd
	etherVLAN   = 0x8100
	etherQinQ   = 0x88a8
	minEthFrame = 60 // shortest Ethernet frame without FCS: shorter IP packets are padded up to it
)

// ipLengthOK reports whether the IP header's length agrees with the frame:
// not truncated, and no trailing bytes beyond Ethernet's minimum padding.
// It reads the Ethernet header, up to two VLAN tags and the IP header's
// length fields only; non-IP frames pass.
func ipLengthOK(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	et := binary.BigEndian.Uint16(f[12:])
	off := 14
	for range 2 {
		if et != etherVLAN && et != etherQinQ {
			break
		}
		if len(f) < off+4 {
			return false
		}
		et = binary.BigEndian.Uint16(f[off+2:])
		off += 4
	}
	var total int
	switch et {
	case etherIPv4:
		if len(f) < off+20 {
			return false
		}
		ihl := int(f[off]&0x0f) * 4
		total = int(binary.BigEndian.Uint16(f[off+2:]))
		if f[off]>>4 != 4 || ihl < 20 || total < ihl {
			return false
		}
	case etherIPv6:
		if len(f) < off+40 {
			return false
		}
		pl := int(binary.BigEndian.Uint16(f[off+4:]))
		if pl == 0 {
			return true // jumbogram: the length is in a hop-by-hop option
		}
		total = 40 + pl
	default:
		return true
	}
	need := off + total
	return need <= len(f) && (len(f) == need || len(f) <= minEthFrame+off-14)
}
