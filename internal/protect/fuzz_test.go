package protect

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// FuzzInspect feeds arbitrary frames from both sides through an Inspector
// that challenges every SYN and drops every out-of-state segment, and that
// holds SYN-proxied connections (IPv4 and IPv6) whose segments it
// translates (sequence and acknowledgement numbers, SACK blocks, the
// cookie ACK turned into the SYN to the server) and whose ICMP errors it
// translates. It must never panic, whatever it transmits must fit the
// chunk and parse, and its checksums are checked with gopacket as the
// oracle: a frame it forwards rewritten keeps every checksum that was
// valid on arrival (one that was not stays as it was: incremental updates
// neither fix nor hide a corrupt frame), and a frame it makes (a bounce, a
// window update or other spare frame) verifies throughout. With fix set,
// the input's checksums are made valid first, so that mutated frames reach
// the rewriting paths with every checksum to keep.
func FuzzInspect(f *testing.F) {
	f.Add(synFrom(cli4, 1, 1).frame(), false, false)
	f.Add(ackFlood(cli6, srv6, 3).frame(), false, false)
	f.Add(tseg{src: srv4, dst: cli4, sport: 80, dport: 1, seq: 9, ack: 2, flags: packet.SYN | packet.ACK, ws: 7, mss: 1460, fromServer: true}.frame(), true, false)
	f.Add(tseg{src: cli4, dst: srv4, sport: 1, dport: 80, seq: 2, ack: 10, flags: packet.ACK, ws: -1,
		sackBlocks: [][2]uint32{{1, 2}, {3, 4}}, payload: []byte("x")}.frame(), false, false)
	i, _ := newTestInspector(f, baseConfig(ModeMitigate))
	// Proxied connections, and errors quoting their segments as they left
	// the gate: PMTUD toward the server, unreachable toward the client.
	for k, fam := range []struct {
		cli, srv, router netip.Addr
		ptb, unreach     uint8
	}{{cli4, srv4, router4, packet.ICMPDestUnreachable, packet.ICMPDestUnreachable},
		{cli6, srv6, router6, packet.ICMPv6PacketTooBig, packet.ICMPv6DestUnreachable}} {
		x, cookie := proxyHandshake(f, i, fam.cli, fam.srv)
		delta := x.sSeq - (cookie + 1)
		f.Add(icmpFrame(f, false, fam.router, fam.srv, fam.ptb, 4, 1280, quotedSeg(f, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, 0)), false, false)
		f.Add(icmpFrame(f, false, fam.router, fam.srv, fam.ptb, 4, 1280, quotedSeg(f, fam.srv, fam.cli, x.sp, x.cp, x.sSeq-delta, x.cSeq, ipLen(fam.srv)+8)), false, false)
		f.Add(icmpFrame(f, true, fam.router, fam.cli, fam.unreach, 1, 0, quotedSeg(f, fam.cli, fam.srv, x.cp, x.sp, x.cSeq, cookie+1+delta, 0)), true, false)
		// Translated segments: client data acking (and SACKing) in the
		// cookie's space, server data in its own, the server's SYN-ACK
		// again (answered by a bounce and a window update), a FIN.
		f.Add(tseg{src: x.c, dst: x.s, sport: x.cp, dport: x.sp, seq: x.cSeq, ack: cookie + 1, flags: packet.ACK | packet.PSH,
			win: 502, ws: -1, payload: []byte("GET /"), sackBlocks: [][2]uint32{{cookie + 100, cookie + 200}}}.frame(), false, false)
		f.Add(x.fromServer(packet.ACK|packet.PSH, []byte("200 OK")).frame(), true, false)
		f.Add(tseg{src: x.s, dst: x.c, sport: x.sp, dport: x.cp, seq: x.sSeq - 1, ack: x.cSeq, flags: packet.SYN | packet.ACK,
			win: 65160, mss: 1460, ws: 7, sack: true, fromServer: true}.frame(), true, false)
		f.Add(x.fromServer(packet.ACK|packet.FIN, nil).frame(), true, true)
		// A cookie ACK from a new client: turned into the SYN to the
		// server, options rebuilt from the cookie.
		cli := netip.AddrFrom4([4]byte{198, 19, 7, byte(k)})
		if fam.cli.Is6() {
			cli = netip.MustParseAddr("2001:2:db8::70")
		}
		syn := tseg{src: cli, dst: fam.srv, sport: 42000, dport: 80, seq: 0x5000, flags: packet.SYN, win: 64240, mss: 1400, ws: 6, sack: true}
		c := parsed(f, run(i, engine.Outer, syn.frame())).TCP.Seq
		f.Add(tseg{src: cli, dst: fam.srv, sport: 42000, dport: 80, seq: 0x5001, ack: c + 1, flags: packet.ACK, win: 502, ws: -1}.frame(), false, false)
	}
	spare := extraOf(i)
	f.Fuzz(func(t *testing.T, frame []byte, inner, fix bool) {
		side := engine.Outer
		if inner {
			side = engine.Inner
		}
		frame = append([]byte(nil), frame...)
		if fix {
			fixChecksums(frame)
		}
		buf := make([]byte, len(frame), len(frame)+128)
		copy(buf, frame)
		var in packet.Packet
		icmpOK := in.Parse(frame) == nil && in.IsICMPError() && icmpChecksumOK(&in, frame)
		pk := run(i, side, buf)
		for _, s := range spare.take() {
			if msg := checksumsValid(s.frame); msg != "" {
				t.Fatalf("spare frame to the %v side: %s\n% x", s.to, msg, s.frame)
			}
		}
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
			if msg := checksumsValid(out); msg != "" {
				t.Fatalf("bounced frame: %s (gopacket)\n% x", msg, out)
			}
		} else if !bytes.Equal(out, frame) {
			if msg := checksumsKept(frame, out); msg != "" {
				t.Fatalf("forwarded frame rewritten: %s (gopacket)\nin  % x\nout % x", msg, frame, out)
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
