package protect

import (
	"encoding/binary"
	"net/netip"

	"github.com/xskgate/xskgate/internal/packet"
)

// Frame rewriting for the SYN proxy. Everything happens in the received
// frame, which the engine lets grow up to the end of its UMEM chunk; the
// builders check that bound and report false rather than overrun.

const (
	ipv4Hdr = 20
	ipv6Hdr = 40
	tcpHdr  = 20
	ttl     = 64
)

// setTCPChecksum computes and stores the checksum of the TCP segment seg.
func setTCPChecksum(seg []byte, src, dst netip.Addr) {
	seg[16], seg[17] = 0, 0
	binary.BigEndian.PutUint16(seg[16:], packet.Checksum(seg, packet.PseudoHeaderSum(src, dst, packet.ProtoTCP, len(seg))))
}

// synOpts writes the options of a SYN or SYN-ACK into b (at least 12
// bytes) and returns their length, a multiple of 4.
func synOpts(b []byte, mss uint16, wscale uint8, sack bool) int {
	n := 0
	b[0], b[1] = 2, 4
	binary.BigEndian.PutUint16(b[2:], mss)
	n = 4
	if sack {
		b[n], b[n+1], b[n+2], b[n+3] = 1, 1, 4, 2
		n += 4
	}
	if wscale != wscaleNone {
		b[n], b[n+1], b[n+2], b[n+3] = 1, 3, 3, wscale
		n += 4
	}
	return n
}

// tcpFields are the TCP header values the builders write.
type tcpFields struct {
	srcPort, dstPort uint16
	seq, ack         uint32
	flags            uint8
	window           uint16
}

func putTCP(seg []byte, f tcpFields, optLen int) {
	binary.BigEndian.PutUint16(seg[0:], f.srcPort)
	binary.BigEndian.PutUint16(seg[2:], f.dstPort)
	binary.BigEndian.PutUint32(seg[4:], f.seq)
	binary.BigEndian.PutUint32(seg[8:], f.ack)
	seg[12] = uint8((tcpHdr+optLen)/4) << 4
	seg[13] = f.flags
	binary.BigEndian.PutUint16(seg[14:], f.window)
	seg[16], seg[17], seg[18], seg[19] = 0, 0, 0, 0
}

// reply rewrites the parsed frame in place into a segment travelling back
// to its sender: MACs, addresses and ports swapped, a fresh IP header (IPv4
// options and IPv6 extension headers are not echoed), the given TCP fields
// (ports are taken from p, swapped) and opts. VLAN tags stay. It returns the
// new frame length, or 0 if the frame's chunk is too small.
func reply(frame []byte, p *packet.Packet, f tcpFields, opts []byte) int {
	ipLen := ipv4Hdr
	if p.IPVersion == 6 {
		ipLen = ipv6Hdr
	}
	if p.L3Off+ipLen+tcpHdr+len(opts) > cap(frame) {
		return 0 // checked before the MACs move: a refused reply leaves the frame as it was
	}
	var mac [6]byte
	copy(mac[:], frame[0:6])
	copy(frame[0:6], frame[6:12])
	copy(frame[6:12], mac[:])
	f.srcPort, f.dstPort = p.DstPort, p.SrcPort
	return putSegment(frame, p.L3Off, p.IPVersion, p.Dst, p.Src, f, opts)
}

// putSegment writes a fresh IP header (no options or extension headers)
// and a TCP segment without payload at frame[l3:], whose L2 header is
// already in place, and returns the frame's length, or 0 if it does not
// fit in cap(frame).
func putSegment(frame []byte, l3 int, ipVersion uint8, src, dst netip.Addr, f tcpFields, opts []byte) int {
	ipLen := ipv4Hdr
	if ipVersion == 6 {
		ipLen = ipv6Hdr
	}
	tcpLen := tcpHdr + len(opts)
	n := l3 + ipLen + tcpLen
	if n > cap(frame) {
		return 0
	}
	frame = frame[:n]
	ip := frame[l3 : l3+ipLen]
	if ipVersion == 4 {
		ip[0], ip[1] = 0x45, 0
		binary.BigEndian.PutUint16(ip[2:], uint16(ipLen+tcpLen))
		ip[4], ip[5] = 0, 0
		ip[6], ip[7] = 0x40, 0 // DF
		ip[8], ip[9] = ttl, packet.ProtoTCP
		a, b := src.As4(), dst.As4()
		copy(ip[12:16], a[:])
		copy(ip[16:20], b[:])
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
	} else {
		ip[0], ip[1], ip[2], ip[3] = 0x60, 0, 0, 0
		binary.BigEndian.PutUint16(ip[4:], uint16(tcpLen))
		ip[6], ip[7] = packet.ProtoTCP, ttl
		a, b := src.As16(), dst.As16()
		copy(ip[8:24], a[:])
		copy(ip[24:40], b[:])
	}
	seg := frame[l3+ipLen:]
	putTCP(seg, f, len(opts))
	copy(seg[tcpHdr:], opts)
	setTCPChecksum(seg, src, dst)
	return n
}

// forwardAs rewrites the parsed frame's TCP segment in place, keeping L2
// and L3 (addresses, IPv4 options, IPv6 extension headers), and drops its
// payload. IP lengths and checksums are fixed up. It returns the new frame
// length, or 0 if the chunk is too small.
func forwardAs(frame []byte, p *packet.Packet, f tcpFields, opts []byte) int {
	tcpLen := tcpHdr + len(opts)
	n := p.L4Off + tcpLen
	if n > cap(frame) {
		return 0
	}
	frame = frame[:n]
	ip := frame[p.L3Off:p.L4Off]
	total := n - p.L3Off
	if p.IPVersion == 4 {
		binary.BigEndian.PutUint16(ip[2:], uint16(total))
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
	} else {
		binary.BigEndian.PutUint16(ip[4:], uint16(total-ipv6Hdr))
	}
	seg := frame[p.L4Off:]
	f.srcPort, f.dstPort = p.SrcPort, p.DstPort
	putTCP(seg, f, len(opts))
	copy(seg[tcpHdr:], opts)
	setTCPChecksum(seg, p.Src, p.Dst)
	return n
}

// translate shifts a proxied flow's sequence space in place: the client's
// ack (and SACK edges, which acknowledge the server's data) by +delta
// toward the server, the server's seq by -delta toward the client. The
// checksum is updated incrementally (RFC 1624).
func translate(frame []byte, p *packet.Packet, toServer bool, delta uint32) {
	seg := frame[p.L4Off : p.L4Off+p.TCP.DataOff]
	ck := binary.BigEndian.Uint16(seg[16:])
	if !toServer {
		old := p.TCP.Seq
		binary.BigEndian.PutUint32(seg[4:], old-delta)
		ck = packet.UpdateChecksum32(ck, old, old-delta)
		binary.BigEndian.PutUint16(seg[16:], ck)
		return
	}
	if p.TCP.Flags&packet.ACK != 0 {
		old := p.TCP.Ack
		binary.BigEndian.PutUint32(seg[8:], old+delta)
		ck = packet.UpdateChecksum32(ck, old, old+delta)
	}
	full := false
	if p.TCP.Opts.Has&packet.HasSACK != 0 {
		// Walk the options again (the parser validated their layout).
		o := seg[tcpHdr:]
		for i := 0; i < len(o); {
			switch o[i] {
			case 0:
				i = len(o)
				continue
			case 1:
				i++
				continue
			}
			l := int(o[i+1])
			if o[i] == 5 {
				for e := i + 2; e+4 <= i+l; e += 4 {
					old := binary.BigEndian.Uint32(o[e:])
					binary.BigEndian.PutUint32(o[e:], old+delta)
					if (tcpHdr+e)%2 == 0 {
						ck = packet.UpdateChecksum32(ck, old, old+delta)
					} else {
						full = true // odd offset: word-wise update does not apply
					}
				}
			}
			i += l
		}
	}
	binary.BigEndian.PutUint16(seg[16:], ck)
	if full {
		tcp := frame[p.L4Off : p.L3Off+p.IPTotalLen]
		setTCPChecksum(tcp, p.Src, p.Dst)
	}
}
