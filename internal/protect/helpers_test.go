package protect

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

var (
	cli4 = netip.MustParseAddr("198.19.113.7")
	srv4 = netip.MustParseAddr("198.18.0.2")
	cli6 = netip.MustParseAddr("2001:2:db8::7")
	srv6 = netip.MustParseAddr("2001:2::2")
	macC = [6]byte{2, 0, 0, 0, 0, 1}
	macS = [6]byte{2, 0, 0, 0, 0, 2}
)

// tseg describes a TCP segment to build into a frame.
type tseg struct {
	src, dst     netip.Addr
	sport, dport uint16
	seq, ack     uint32
	flags        uint8
	win          uint16
	mss          uint16 // 0: none
	ws           int    // -1: none
	sack         bool
	sackBlocks   [][2]uint32
	payload      []byte
	fromServer   bool
}

// frame builds an Ethernet frame with valid checksums, in a buffer with
// room to grow as a UMEM chunk has.
func (s tseg) frame() []byte {
	var opts []byte
	if s.mss != 0 {
		opts = append(opts, 2, 4, byte(s.mss>>8), byte(s.mss))
	}
	if s.sack {
		opts = append(opts, 1, 1, 4, 2)
	}
	if s.ws >= 0 {
		opts = append(opts, 1, 3, 3, byte(s.ws))
	}
	if len(s.sackBlocks) > 0 {
		opts = append(opts, 1, 1, 5, byte(2+8*len(s.sackBlocks)))
		for _, b := range s.sackBlocks {
			opts = binary.BigEndian.AppendUint32(opts, b[0])
			opts = binary.BigEndian.AppendUint32(opts, b[1])
		}
	}
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	tcp := make([]byte, 20+len(opts), 20+len(opts)+len(s.payload))
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], s.seq)
	binary.BigEndian.PutUint32(tcp[8:], s.ack)
	tcp[12] = byte(len(tcp)/4) << 4
	tcp[13] = s.flags
	binary.BigEndian.PutUint16(tcp[14:], s.win)
	copy(tcp[20:], opts)
	tcp = append(tcp, s.payload...)
	setTCPChecksum(tcp, s.src, s.dst)
	f := make([]byte, 0, 2048)
	dm, sm := macS, macC
	if s.fromServer {
		dm, sm = macC, macS
	}
	f = append(f, dm[:]...)
	f = append(f, sm[:]...)
	if s.src.Is4() {
		f = append(f, 0x08, 0x00)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		ip[6] = 0x40
		ip[8], ip[9] = 64, 6
		a, b := s.src.As4(), s.dst.As4()
		copy(ip[12:], a[:])
		copy(ip[16:], b[:])
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
		f = append(f, ip...)
	} else {
		f = append(f, 0x86, 0xdd)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = 6, 64
		a, b := s.src.As16(), s.dst.As16()
		copy(ip[8:], a[:])
		copy(ip[24:], b[:])
		f = append(f, ip...)
	}
	return append(f, tcp...)
}

// fakeClock is a settable clock in nanoseconds.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() int64              { return c.ns.Load() }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func newTestInspector(tb testing.TB, cfg Config) (*Inspector, *fakeClock) {
	tb.Helper()
	clk := &fakeClock{}
	clk.ns.Store(int64(100 * time.Second))
	tb2, err := flow.New(flow.Config{Capacity: 4096})
	if err != nil {
		tb.Fatal(err)
	}
	i, err := New(cfg, Options{Workers: 4, Table: tb2, Clock: clk.now})
	if err != nil {
		tb.Fatal(err)
	}
	return i, clk
}

// run inspects one frame from side and returns the packet after it.
func run(i *Inspector, side engine.Side, frame []byte) engine.Packet {
	pk := []engine.Packet{{Data: frame, Len: uint32(len(frame)), Verdict: engine.Forward}}
	pk[0].Desc.Len = uint32(len(frame))
	i.Inspect(0, side, pk)
	return pk[0]
}

// parsed parses the frame as sent (Data[:Len]) and checks its checksums.
func parsed(tb testing.TB, pk engine.Packet) *packet.Packet {
	tb.Helper()
	f := pk.Data[:pk.Len]
	var p packet.Packet
	if err := p.Parse(f); err != nil {
		tb.Fatalf("output frame does not parse: %v", err)
	}
	if p.Proto == packet.ProtoTCP && !packet.VerifyTCPChecksum(&p, f) {
		tb.Fatalf("bad TCP checksum in output frame")
	}
	if p.IPVersion == 4 && packet.Checksum(f[p.L3Off:p.L3Off+p.IPHeaderLen], 0) != 0 {
		tb.Fatalf("bad IPv4 header checksum")
	}
	return &p
}

// baseConfig protects srv4/srv6 with one rule.
func baseConfig(mode Mode) Config {
	return Config{
		Enabled:  true,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/24"), netip.MustParsePrefix("2001:2::/64")},
		Log:      LogConfig{Quiet: true},
		Rules: []Rule{
			{Name: "v4", Scope: netip.MustParsePrefix("198.18.0.0/24"), Mode: mode},
			{Name: "v6", Scope: netip.MustParsePrefix("2001:2::/64"), Mode: mode},
		},
	}
}

// fakeExtra is a worker's spare frames (engine.Extra) outside an engine:
// it records what the Inspector sends.
type fakeExtra struct {
	buf    []byte
	to     engine.Side
	refuse bool
	sent   []sentFrame
	// discard counts frames in n instead of keeping copies (which
	// allocate) in sent
	discard bool
	n       int
}

type sentFrame struct {
	to    engine.Side
	frame []byte
}

func (x *fakeExtra) Frame(to engine.Side) []byte {
	if x.refuse {
		return nil
	}
	if x.buf == nil {
		x.buf = make([]byte, 4096-256)
	}
	x.to = to
	return x.buf[:0]
}

func (x *fakeExtra) Send(n int) bool {
	if x.buf == nil || n <= 0 || n > len(x.buf) {
		return false
	}
	x.n++
	if !x.discard {
		x.sent = append(x.sent, sentFrame{x.to, append([]byte(nil), x.buf[:n]...)})
	}
	return true
}

// take returns the frames sent since the last call.
func (x *fakeExtra) take() []sentFrame {
	s := x.sent
	x.sent = nil
	return s
}

// extraOf gives worker 0 of i (the one run uses) a fakeExtra.
func extraOf(i *Inspector) *fakeExtra {
	x := &fakeExtra{}
	i.UseExtra(0, x)
	return x
}
