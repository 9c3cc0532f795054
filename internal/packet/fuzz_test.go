package packet

import (
	"bytes"
	"testing"
)

// Seeds beyond testdata/fuzz: the builder frames, so that the fuzzers start
// from every shape the table tests know even if the corpus is pruned.
func addBuilderSeeds(f *testing.F) {
	for _, b := range []func(testing.TB) []byte{
		frameIPv4TCPSYN, frameIPv6TCPACK, frameIPv4UDP, frameIPv6UDP, frameVLAN, frameQinQ,
		frameICMPEcho, frameICMPv6Echo, frameICMPv6ND, frameARP, frameIPv4Options,
		frameIPv4FirstFragTCP, frameIPv4LaterFrag, frameIPv6ExtChain, frameIPv6FirstFrag,
		frameIPv6LaterFrag, framePadded,
	} {
		f.Add(b(f))
	}
}

// FuzzParse checks the parser's contract on arbitrary input: no panic, a
// declared Error on failure, in-bounds consistent offsets on success, a
// complete reset between frames, and no writes to the frame.
func FuzzParse(f *testing.F) {
	addBuilderSeeds(f)
	var dirty Packet
	if err := dirty.Parse(frameIPv6ExtChain(f)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		orig := bytes.Clone(frame)
		var p Packet
		err := p.Parse(frame)
		checkInvariants(t, frame, &p, err)
		if !bytes.Equal(frame, orig) {
			t.Fatal("Parse modified the frame")
		}
		// A reused Packet must end up exactly like a fresh one.
		reused := dirty
		if err2 := reused.Parse(frame); err2 != err || reused != p { //nolint:errorlint
			t.Fatalf("reused Packet differs: %v/%+v vs %v/%+v", err2, reused, err, p)
		}
		if err == nil && p.Proto == ProtoTCP && p.L4Off >= 0 {
			// Must not panic, and must agree with itself. 0x0000 and 0xffff
			// are both ones'-complement zero, so a stored 0xffff verifies
			// where TCPChecksum computes 0 (found by this fuzzer).
			c := TCPChecksum(&p, frame)
			ok := c == p.TCP.Checksum || c == 0 && p.TCP.Checksum == 0xffff
			if VerifyTCPChecksum(&p, frame) != ok {
				t.Fatal("VerifyTCPChecksum disagrees with TCPChecksum")
			}
		}
	})
}

// FuzzParseDifferential compares Parse with gopacket's decoder, which is
// used as an oracle. Cases where the two legitimately differ are listed in
// compareWithGopacket's doc comment and skipped explicitly, with the
// reason, via t.Skip.
func FuzzParseDifferential(f *testing.F) {
	addBuilderSeeds(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		var p Packet
		err := p.Parse(frame)
		checkInvariants(t, frame, &p, err)
		if reason := compareWithGopacket(t, frame, &p, err); reason != "" {
			t.Skip(reason)
		}
	})
}
