package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

// Generator sends one frame over and over out of an interface with
// BPF_PROG_RUN in live-frame mode: a one-instruction XDP program returns
// XDP_TX, so the kernel transmits each copy through the device's
// ndo_xdp_xmit. About 8 Mpps from one core here, far above what any path
// under test forwards, and counted by the kernel, not by us.
type Generator struct {
	prog    *ebpf.Program
	frame   []byte
	ifindex int
	Sent    atomic.Uint64
}

// xdpMD is struct xdp_md as BPF_PROG_RUN takes it.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// NewGenerator loads the program. ifindex is resolved, when running, in the
// network namespace of the thread that calls Run.
func NewGenerator(ifindex int, frame []byte) (*Generator, error) {
	spec := &ebpf.ProgramSpec{
		Name: "xskgate_gen", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 3 /* XDP_TX */), asm.Return()},
	}
	p, err := ebpf.NewProgram(spec)
	if err != nil {
		return nil, fmt.Errorf("load generator program: %w", err)
	}
	return &Generator{prog: p, frame: frame, ifindex: ifindex}, nil
}

// Run transmits until stop is closed, at most rate frames/s (0: as fast as
// possible), on the calling thread pinned to cpu (-1: not pinned). Call it
// from a thread inside the sending namespace.
func (g *Generator) Run(cpu int, rate float64, stop <-chan struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pin generator to cpu %d: %w", cpu, err)
		}
	}
	repeat := uint32(1 << 16)
	if rate > 0 {
		// Each call sets up a page pool for its live frames, a fixed cost
		// that starves small calls: send 10 ms worth per call (a burst of
		// about 1 ms at full speed, which the rings absorb), then pace.
		repeat = uint32(max(256, min(float64(1<<16), rate/100)))
	}
	ctx := xdpMD{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(g.ifindex)}
	start := time.Now()
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		_, err := g.prog.Run(&ebpf.RunOptions{
			Data: g.frame, Context: ctx, Repeat: repeat,
			Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64,
		})
		if err != nil {
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("live-frame BPF_PROG_RUN refused (needs Linux 5.18+): %w", err)
			}
			return fmt.Errorf("generate: %w", err)
		}
		sent := g.Sent.Add(uint64(repeat))
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				time.Sleep(d)
			}
		}
	}
}

// Close unloads the program.
func (g *Generator) Close() error { return g.prog.Close() }

// UDPFrame builds a 60-byte Ethernet/IPv4/UDP frame (64 on the wire with
// the FCS) with valid checksums, to the discard port.
func UDPFrame(dst, src net.HardwareAddr, sip, dip netip.Addr) []byte {
	f := make([]byte, 60)
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 46)
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s, d := sip.As4(), dip.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum16(ip, 0)))
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], 9)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], 26)
	ph := sum16(s[:], 0)
	ph = sum16(d[:], ph)
	ph += unix.IPPROTO_UDP + 26
	binary.BigEndian.PutUint16(udp[6:], ^fold(sum16(udp, ph)))
	return f
}

func sum16(b []byte, s uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return uint16(s)
}
