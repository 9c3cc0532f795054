package protect

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// FuzzInspect feeds arbitrary frames from both sides through an Inspector
// that challenges every SYN and drops every out-of-state segment, and that
// holds SYN-proxied connections (IPv4 and IPv6) whose ICMP errors it
// translates: it must never panic, whatever it transmits must fit the
// chunk and parse, and an ICMP error it forwards keeps a valid checksum if
// it came with one.
func FuzzInspect(f *testing.F) {
	f.Add(synFrom(cli4, 1, 1).frame(), false)
	f.Add(ackFlood(cli6, srv6, 3).frame(), false)
	f.Add(tseg{src: srv4, dst: cli4, sport: 80, dport: 1, seq: 9, ack: 2, flags: packet.SYN | packet.ACK, ws: 7, mss: 1460, fromServer: true}.frame(), true)
	f.Add(tseg{src: cli4, dst: srv4, sport: 1, dport: 80, seq: 2, ack: 10, flags: packet.ACK, ws: -1,
		sackBlocks: [][2]uint32{{1, 2}, {3, 4}}, payload: []byte("x")}.frame(), false)
	i, _ := newTestInspector(f, baseConfig(ModeMitigate))
	// Proxied connections, and errors quoting their segments as they left
	// the gate: PMTUD toward the server, unreachable toward the client.
	for _, fam := range []struct {
		cli, srv, router netip.Addr
		ptb, unreach     uint8
	}{{cli4, srv4, router4, packet.ICMPDestUnreachable, packet.ICMPDestUnreachable},
		{cli6, srv6, router6, packet.ICMPv6PacketTooBig, packet.ICMPv6DestUnreachable}} {
		x, cookie := proxyHandshake(f, i, fam.cli, fam.srv)
		delta := x.sSeq - (cookie + 1)
		f.Add(icmpFrame(f, false, fam.router, fam.srv, fam.ptb, 4, 1280, quotedSeg(f, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, 0)), false)
		f.Add(icmpFrame(f, false, fam.router, fam.srv, fam.ptb, 4, 1280, quotedSeg(f, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, ipLen(fam.srv)+8)), false)
		f.Add(icmpFrame(f, true, fam.router, fam.cli, fam.unreach, 1, 0, quotedSeg(f, fam.cli, fam.srv, x.cp, x.sp, x.cSeq, cookie+1+delta, 0)), true)
	}
	f.Fuzz(func(t *testing.T, frame []byte, inner bool) {
		side := engine.Outer
		if inner {
			side = engine.Inner
		}
		buf := make([]byte, len(frame), len(frame)+128)
		copy(buf, frame)
		var in packet.Packet
		icmpOK := in.Parse(frame) == nil && in.IsICMPError() && icmpChecksumOK(&in, frame)
		pk := run(i, side, buf)
		if pk.Verdict == engine.Drop {
			return
		}
		if int(pk.Len) > cap(buf) || pk.Len == 0 {
			t.Fatalf("length %d outside the chunk (cap %d)", pk.Len, cap(buf))
		}
		out := pk.Data[:pk.Len]
		if pk.Verdict == engine.Bounce {
			var p packet.Packet
			if err := p.Parse(out); err != nil || !packet.VerifyTCPChecksum(&p, out) {
				t.Fatalf("bounced frame invalid: %v", err)
			}
		}
		if icmpOK {
			var p packet.Packet
			if err := p.Parse(out); err != nil || !icmpChecksumOK(&p, out) {
				t.Fatalf("ICMP error forwarded with a broken checksum (%v)", err)
			}
		}
	})
}

// icmpChecksumOK verifies the checksum of the ICMP or ICMPv6 message p
// describes in frame (ICMPv6 covers a pseudo-header, RFC 4443 2.3).
func icmpChecksumOK(p *packet.Packet, frame []byte) bool {
	msg := frame[p.L4Off : p.L3Off+p.IPTotalLen]
	var s uint32
	if p.IPVersion == 6 {
		a, b := p.Src.As16(), p.Dst.As16()
		for k := 0; k < 16; k += 2 {
			s += uint32(binary.BigEndian.Uint16(a[k:])) + uint32(binary.BigEndian.Uint16(b[k:]))
		}
		s += uint32(len(msg)) + packet.ProtoICMPv6
	}
	return packet.Checksum(msg, s) == 0
}
