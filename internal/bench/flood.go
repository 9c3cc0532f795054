package bench

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/xskgate/xskgate/internal/packet"
)

// Flood sources: every IPv4 address of the benchmarking range
// 198.18.0.0/15 outside the lab's own subnet 198.18.0.0/24 (where the
// client and server live), so that no reply to a spoofed source is ever
// delivered to a lab host, and none leaves the lab: the hosts have no
// route beyond their /24.
const (
	floodBase  = 0xc6120000 // 198.18.0.0
	floodFirst = 256        // 198.18.1.0
	floodCount = 1<<17 - floodFirst
	// floodStep walks the sources in a scattered order: coprime with
	// floodCount (2^8 * 7 * 73), so every source comes once per cycle.
	floodStep = 40503
	// Source ports walk 1024..65535 with a step coprime with their count.
	portFirst = 1024
	portCount = 1<<16 - portFirst
	portStep  = 7919
)

// FloodSource is the k-th source address of a flood.
func FloodSource(k uint64) netip.Addr {
	i := uint32(k * floodStep % floodCount)
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], floodBase+floodFirst+i)
	return netip.AddrFrom4(a)
}

// FloodPort is the k-th source port of a flood.
func FloodPort(k uint64) uint16 { return uint16(portFirst + k*portStep%portCount) }

// IsFloodSource reports whether a is one a flood may use.
func IsFloodSource(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	v := binary.BigEndian.Uint32(a.AsSlice())
	return v >= floodBase+floodFirst && v < floodBase+1<<17
}

// Offsets in the 60-byte Ethernet/IPv4(20 bytes)/TCP frames.
const (
	offIPCsum  = 14 + 10
	offIPSrc   = 14 + 12
	offSport   = 34
	offTCPCsum = 34 + 16
)

// Spoofer is the Varier of the floods: copy k comes from FloodSource(k),
// port FloodPort(k). It rewrites six bytes and patches the IPv4 header and
// TCP checksums for the change (RFC 1624), from what the slot holds now.
type Spoofer struct{}

// Vary implements Varier for an Ethernet/IPv4/TCP frame without IP
// options.
func (Spoofer) Vary(f []byte, k uint64) {
	src := FloodSource(k).As4()
	to := binary.BigEndian.Uint32(src[:])
	from := binary.BigEndian.Uint32(f[offIPSrc:])
	toPort, fromPort := FloodPort(k), binary.BigEndian.Uint16(f[offSport:])
	binary.BigEndian.PutUint32(f[offIPSrc:], to)
	binary.BigEndian.PutUint16(f[offSport:], toPort)
	ipc := binary.BigEndian.Uint16(f[offIPCsum:])
	binary.BigEndian.PutUint16(f[offIPCsum:], packet.UpdateChecksum32(ipc, from, to))
	tc := binary.BigEndian.Uint16(f[offTCPCsum:])
	tc = packet.UpdateChecksum32(tc, from, to)
	binary.BigEndian.PutUint16(f[offTCPCsum:], packet.UpdateChecksum16(tc, fromPort, toPort))
}

// FloodPortDst is the destination port of the flood frames: a port the
// lab's server does not listen on.
const FloodPortDst = 80

// TCPSynFrame builds a 60-byte Ethernet/IPv4/TCP SYN with an MSS option
// (1460) and valid checksums, from FloodSource(0) and FloodPort(0) to port
// FloodPortDst: a SYN flood's frame, whose source the Spoofer varies.
func TCPSynFrame(dst, src net.HardwareAddr, dip netip.Addr) []byte {
	return tcpFrame(dst, src, FloodSource(0), dip, FloodPort(0), FloodPortDst, 0x2b5f00d1, 0, 0x02 /* SYN */, 64240,
		[]byte{2, 4, 0x05, 0xb4})
}

// TCPSynFrameLinux is TCPSynFrame with the options Linux puts in a SYN
// (MSS 1460, SACK permitted, timestamps, window scale 7): 74 bytes, 78 on
// the wire.
func TCPSynFrameLinux(dst, src net.HardwareAddr, dip netip.Addr) []byte {
	return tcpFrame(dst, src, FloodSource(0), dip, FloodPort(0), FloodPortDst, 0x2b5f00d1, 0, 0x02 /* SYN */, 64240,
		[]byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0x12, 0xd6, 0x87, 0, 0, 0, 0, 1, 3, 3, 7})
}

// TCPFloodAckFrame is an out-of-state ACK from FloodSource(0) and
// FloodPort(0) to port FloodPortDst: an ACK flood's frame, whose source
// the Spoofer varies.
func TCPFloodAckFrame(dst, src net.HardwareAddr, dip netip.Addr) []byte {
	return tcpFrame(dst, src, FloodSource(0), dip, FloodPort(0), FloodPortDst, 0x12345678, 0x9abcdef0, 0x10 /* ACK */, 512, nil)
}
