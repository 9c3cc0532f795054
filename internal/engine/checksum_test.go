package engine_test

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xsk"
)

// capture is a peer that keeps a copy of every frame it receives.
type capture struct {
	mu     sync.Mutex
	frames [][]byte
}

func (c *capture) Deliver(f []byte) bool {
	c.mu.Lock()
	c.frames = append(c.frames, bytes.Clone(f))
	c.mu.Unlock()
	return true
}

func (c *capture) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		got := len(c.frames)
		c.mu.Unlock()
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("peer received %d of %d frames", got, n)
		}
		time.Sleep(time.Millisecond)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.frames)
}

// l4Frame builds an Ethernet frame holding a TCP (or UDP) segment of
// payload bytes from src to dst whose checksum field holds what a sender
// with checksum offload puts there: the folded pseudo-header sum. pad
// adds link-layer padding after the IP packet.
func l4Frame(src, dst netip.Addr, udp bool, payload, pad int) []byte {
	l4 := 20
	proto := byte(packet.ProtoTCP)
	if udp {
		l4, proto = 8, byte(packet.ProtoUDP)
	}
	segLen := l4 + payload
	f := make([]byte, 14, 14+40+segLen+pad)
	if src.Is4() {
		binary.BigEndian.PutUint16(f[12:], 0x0800)
		ip := make([]byte, 20)
		ip[0], ip[8], ip[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(ip[2:], uint16(20+segLen))
		copy(ip[12:], src.AsSlice())
		copy(ip[16:], dst.AsSlice())
		binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
		f = append(f, ip...)
	} else {
		binary.BigEndian.PutUint16(f[12:], 0x86dd)
		ip := make([]byte, 40)
		ip[0], ip[6], ip[7] = 0x60, proto, 64
		binary.BigEndian.PutUint16(ip[4:], uint16(segLen))
		copy(ip[8:], src.AsSlice())
		copy(ip[24:], dst.AsSlice())
		f = append(f, ip...)
	}
	seg := make([]byte, segLen)
	binary.BigEndian.PutUint16(seg[0:], 40000)
	binary.BigEndian.PutUint16(seg[2:], 80)
	field := 16
	if udp {
		binary.BigEndian.PutUint16(seg[4:], uint16(segLen))
		field = 6
	} else {
		binary.BigEndian.PutUint32(seg[4:], 1000)
		seg[12], seg[13] = 5<<4, 0x18 // PSH|ACK
		binary.BigEndian.PutUint16(seg[14:], 512)
	}
	for i := l4; i < segLen; i++ {
		seg[i] = byte(i*7 + payload)
	}
	binary.BigEndian.PutUint16(seg[field:], ^packet.Checksum(nil, packet.PseudoHeaderSum(src, dst, proto, segLen)))
	f = append(f, seg...)
	return append(f, make([]byte, pad)...)
}

// checksumOK verifies the TCP/UDP checksum of frame as a receiver would.
func checksumOK(t *testing.T, frame []byte) bool {
	t.Helper()
	ok, err := l4ChecksumValid(frame)
	if err != nil {
		t.Fatalf("received frame does not parse: %v", err)
	}
	return ok
}

func l4ChecksumValid(frame []byte) (bool, error) {
	var p packet.Packet
	if err := p.Parse(frame); err != nil {
		return false, err
	}
	seg := frame[p.L4Off : p.L3Off+p.IPTotalLen]
	return packet.Checksum(seg, packet.PseudoHeaderSum(p.Src, p.Dst, p.Proto, len(seg))) == 0, nil
}

// TestPartialChecksums: frames with partial checksums (the neighbours'
// TX checksum offload) cross the engine and arrive with valid checksums,
// completed by the kernel at TX where the port can ask it (a UMEM with TX
// metadata, copy mode) and in software where it cannot, or where the
// segment does not end at the frame's end (padding: the kernel sums to
// the end). Complete checksums are left alone.
func TestPartialChecksums(t *testing.T) {
	v4s, v4d := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	v6s, v6d := netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")
	var frames [][]byte
	deferred := 0 // frames the kernel can complete
	for _, a := range [][2]netip.Addr{{v4s, v4d}, {v6s, v6d}} {
		for _, udp := range []bool{false, true} {
			for _, n := range []int{0, 1, 2, 63, 1000, 1400} {
				frames = append(frames, l4Frame(a[0], a[1], udp, n, 0))
				deferred++
			}
		}
	}
	frames = append(frames, l4Frame(v4s, v4d, false, 0, 6)) // a 60-byte frame: padded
	full := l4Frame(v4s, v4d, false, 100, 0)
	seg := full[34:]
	binary.BigEndian.PutUint16(seg[16:], 0)
	binary.BigEndian.PutUint16(seg[16:], packet.Checksum(seg, packet.PseudoHeaderSum(v4s, v4d, packet.ProtoTCP, len(seg))))
	frames = append(frames, full)
	partial := uint64(len(frames) - 1)

	for _, tc := range []struct {
		name   string
		md     uint32
		kernel uint64 // ChecksumsOffloaded expected
	}{{"kernel", xsk.TxMetadataLen, uint64(deferred)}, {"software", 0, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			g := startCaptureGate(t, tc.md, engine.Config{})
			got := g.run(t, frames)
			for i, f := range got {
				if !checksumOK(t, f) {
					t.Errorf("frame %d arrived with a bad checksum", i)
				}
			}
			out, in := &g.e.Workers()[0].Stats[engine.Outer], &g.e.Workers()[0].Stats[engine.Inner]
			if c := out.ChecksumsCompleted.Load(); c != partial {
				t.Errorf("ChecksumsCompleted %d, want %d", c, partial)
			}
			if c := in.ChecksumsOffloaded.Load(); c != tc.kernel {
				t.Errorf("ChecksumsOffloaded %d, want %d", c, tc.kernel)
			}
		})
	}
}

// TestPartialChecksumInspector: an Inspector that rewrites a frame calls
// CompleteChecksum first, after which the checksum is whole in the UMEM.
// One that rewrites a header and updates the checksum incrementally
// without it leaves a field that is no longer the pseudo-header sum: the
// frame goes as the Inspector left it, counted stale. Bytes rewritten
// around an untouched partial field are summed by the kernel as they are.
func TestPartialChecksumInspector(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	frames := [][]byte{l4Frame(src, dst, false, 500, 0), l4Frame(src, dst, false, 500, 0), l4Frame(src, dst, false, 500, 0)}
	n := 0
	var whole bool
	insp := inspectFunc(func(_ int, _ engine.Side, pkts []engine.Packet) {
		for i := range pkts {
			pk := &pkts[i]
			seg := pk.Data[34:]
			seq := binary.BigEndian.Uint32(seg[4:])
			switch n {
			case 0: // as the SYN proxy's translate does
				pk.CompleteChecksum()
				whole = checksumOK(t, pk.Data)
				binary.BigEndian.PutUint32(seg[4:], seq+1000)
				ck := packet.UpdateChecksum32(binary.BigEndian.Uint16(seg[16:]), seq, seq+1000)
				binary.BigEndian.PutUint16(seg[16:], ck)
			case 1: // the same without CompleteChecksum: a bug
				binary.BigEndian.PutUint32(seg[4:], seq+1000)
				ck := packet.UpdateChecksum32(binary.BigEndian.Uint16(seg[16:]), seq, seq+1000)
				binary.BigEndian.PutUint16(seg[16:], ck)
			case 2: // data rewritten, field untouched
				binary.BigEndian.PutUint32(seg[4:], seq+1000)
			}
			n++
		}
	})
	g := startCaptureGate(t, xsk.TxMetadataLen, engine.Config{Inspector: insp})
	got := g.run(t, frames)
	if !whole {
		t.Fatal("CompleteChecksum left the checksum invalid")
	}
	for i, want := range []bool{true, false, true} {
		if ok := checksumOK(t, got[i]); ok != want {
			t.Errorf("frame %d: checksum valid %v, want %v", i, ok, want)
		}
	}
	in := &g.e.Workers()[0].Stats[engine.Inner]
	if s, o := in.ChecksumsStale.Load(), in.ChecksumsOffloaded.Load(); s != 1 || o != 1 {
		t.Fatalf("ChecksumsStale %d, ChecksumsOffloaded %d, want 1 and 1", s, o)
	}
}

type inspectFunc func(int, engine.Side, []engine.Packet)

func (f inspectFunc) Inspect(w int, s engine.Side, p []engine.Packet) { f(w, s, p) }

type captureGate struct {
	*modelGate
	peer *capture
}

// startCaptureGate is a one-queue model gate whose inner port's peer
// captures what the engine sends, on a UMEM with a TX metadata area of
// md bytes (0: none).
func startCaptureGate(t *testing.T, md uint32, cfg engine.Config) *captureGate {
	g := &captureGate{peer: &capture{}}
	g.modelGate = startPeerGate(t, md, cfg, g.peer)
	return g
}

// startPeerGate starts a one-queue model gate on a UMEM with a TX
// metadata area of md bytes (0: none), inner's frames delivered to peer.
func startPeerGate(t *testing.T, md uint32, cfg engine.Config, peer kmodel.Receiver) *modelGate {
	g := buildModelGate(t, 1, 1024, cfg, func(c *kmodel.Config) { c.TxMetadataLen = md })
	g.inner[0].SetPeer(peer)
	g.e.Prime()
	g.outer[0].Start()
	g.inner[0].Start()
	g.e.Start()
	t.Cleanup(func() { g.e.Stop(time.Second) })
	return g
}

// run sends frames in at outer one by one and returns what inner's peer
// received, in order.
func (g *captureGate) run(t *testing.T, frames [][]byte) (got [][]byte) {
	t.Helper()
	for i, f := range frames {
		deadline := time.Now().Add(5 * time.Second)
		for !g.outer[0].Deliver(f) {
			if time.Now().After(deadline) {
				t.Fatalf("frame %d refused", i)
			}
			time.Sleep(time.Millisecond)
		}
		got = g.peer.wait(t, i+1) // in order: one at a time
	}
	return got
}

// counter is a peer that only counts the frames with a valid checksum.
type counter struct{ ok, bad atomic.Uint64 }

func (c *counter) Deliver(f []byte) bool {
	if ok, _ := l4ChecksumValid(f); ok {
		c.ok.Add(1)
	} else {
		c.bad.Add(1)
	}
	return true
}

// TestPartialChecksumAllocs pins zero allocations per packet on the path
// that leaves partial checksums to the kernel.
func TestPartialChecksumAllocs(t *testing.T) {
	frame := l4Frame(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), false, 1000, 0)
	peer := &counter{}
	g := startPeerGate(t, xsk.TxMetadataLen, engine.Config{}, peer)
	// In steps of 32 frames, each step waited for, so that the worker
	// keeps up and the frames take the engine's path, not the model's
	// FILL-empty drop.
	arrived := func() uint64 { return peer.ok.Load() + peer.bad.Load() + g.kernelDrops() }
	send := func(n uint64) {
		deadline := time.Now().Add(20 * time.Second)
		for sent := uint64(0); sent < n; {
			want := arrived() + 32
			for k := 0; k < 32; {
				if g.outer[0].Deliver(frame) {
					k++
				} else if time.Now().After(deadline) {
					t.Fatalf("sent only %d of %d frames", sent, n)
				} else {
					runtime.Gosched()
				}
			}
			sent += 32
			for arrived() < want {
				if time.Now().After(deadline) {
					t.Fatalf("only %d of %d frames arrived", arrived(), want)
				}
				runtime.Gosched()
			}
		}
	}
	send(2016) // warm up
	allocs := testing.AllocsPerRun(5, func() { send(10016) })
	if allocs > 20 {
		t.Fatalf("%.0f allocations per 10016 packets", allocs)
	}
	if b := peer.bad.Load(); b != 0 {
		t.Fatalf("%d frames arrived with a bad checksum", b)
	}
	t.Logf("%d frames forwarded with valid checksums, %d dropped by the model kernel", peer.ok.Load(), g.kernelDrops())
	if o := g.e.Workers()[0].Stats[engine.Inner].ChecksumsOffloaded.Load(); o < peer.ok.Load()/2 {
		t.Fatalf("%d checksums left to the kernel, of %d frames forwarded", o, peer.ok.Load())
	}
}
