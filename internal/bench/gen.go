package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/packet"
)

// Generator sends one frame over and over out of an interface with
// BPF_PROG_RUN in live-frame mode: the XDP program returns XDP_TX, so the
// kernel transmits each copy through the device's ndo_xdp_xmit. About
// 1.4 Mpps reach the gate from one core here, above what either path under
// test forwards.
//
// Pacing happens inside the program, per frame: it transmits only when
// bpf_ktime_get_ns() has reached the next slot, and drops the copy
// otherwise. Pacing between calls does not work: each live-frame call sets
// up a page pool, a fixed cost of milliseconds, so it could only make
// bursts. The program also counts what it transmitted, so the offered rate
// is exact.
type Generator struct {
	prog    *ebpf.Program
	state   *ebpf.Map // one genState
	frame   []byte
	ifindex int
	// Limit bounds a Run (default 10 minutes).
	Limit time.Duration
	// Nice is the generating thread's nice value during a Run (0: as it
	// is).
	Nice int
}

// headerBytes of the frame (Ethernet, IPv4, UDP ports) are rewritten on
// every transmitted copy.
const headerBytes = 36

// genState is the program's map value.
type genState struct {
	Next     uint64 // ktime of the next frame to transmit
	Interval uint64 // ns between frames; 0 = as fast as possible
	Sent     uint64 // frames transmitted
}

// xdpMD is struct xdp_md as BPF_PROG_RUN takes it.
type xdpMD struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// NewGenerator loads the program. ifindex is resolved, when running, in the
// network namespace of the thread that calls Run.
func NewGenerator(ifindex int, frame []byte) (*Generator, error) {
	if len(frame) < headerBytes {
		return nil, fmt.Errorf("generator frame of %d bytes: need at least %d", len(frame), headerBytes)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xskgate_pace", Type: ebpf.Array, KeySize: 4, ValueSize: 24, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("create generator map: %w", err)
	}
	const drop = "drop"
	insns := asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1), // ctx
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, drop),
		asm.Mov.Reg(asm.R7, asm.R0),
		asm.FnKtimeGetNs.Call(),
		asm.LoadMem(asm.R1, asm.R7, 0, asm.DWord), // next
		asm.JGT.Reg(asm.R1, asm.R0, drop),         // not yet
		asm.LoadMem(asm.R2, asm.R7, 8, asm.DWord), // interval
		asm.Add.Reg(asm.R1, asm.R2),
		// Fell behind (the core was busy): restart from now rather than
		// catching up in a burst.
		asm.JGE.Reg(asm.R1, asm.R0, "store"),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.Add.Reg(asm.R1, asm.R2),
		asm.StoreMem(asm.R7, 0, asm.R1, asm.DWord).WithSymbol("store"),
		asm.LoadMem(asm.R1, asm.R7, 16, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R7, 16, asm.R1, asm.DWord),
		// Rewrite the headers: live-frame mode recycles a page without
		// re-initialising it, and a path that forwards the frame in place
		// (Linux rewrites the MACs, TTL and checksum) hands the page back
		// changed; the next copy would leave with the wrong headers.
		asm.LoadMem(asm.R2, asm.R6, 0, asm.Word), // data
		asm.LoadMem(asm.R3, asm.R6, 4, asm.Word), // data_end
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, headerBytes),
		asm.JGT.Reg(asm.R4, asm.R3, drop),
	}
	for off := 0; off < headerBytes; off += 4 {
		insns = append(insns, asm.StoreImm(asm.R2, int16(off), int64(int32(binary.LittleEndian.Uint32(frame[off:]))), asm.Word))
	}
	insns = append(insns,
		asm.Mov.Imm(asm.R0, 3), // XDP_TX
		asm.Return(),
		asm.Mov.Imm(asm.R0, 1).WithSymbol(drop), // XDP_DROP
		asm.Return(),
	)
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xskgate_gen", Type: ebpf.XDP, License: "GPL", Instructions: insns})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("load generator program: %w", err)
	}
	return &Generator{prog: p, state: m, frame: frame, ifindex: ifindex}, nil
}

// Sent is how many frames the program transmitted so far.
func (g *Generator) Sent() uint64 {
	var st genState
	if err := g.state.Lookup(uint32(0), &st); err != nil {
		return 0
	}
	return st.Sent
}

// Run transmits until stop is closed, at rate frames/s (0: as fast as
// possible), on the calling thread pinned to cpu (-1: not pinned). Call it
// from a thread inside the sending namespace.
func (g *Generator) Run(cpu int, rate float64, stop <-chan struct{}) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	undo, err := pinThread(cpu, g.Nice)
	if err != nil {
		return err
	}
	defer undo()
	st := genState{}
	if rate > 0 {
		st.Interval = uint64(float64(time.Second) / rate)
	}
	if err := g.state.Put(uint32(0), st); err != nil {
		return fmt.Errorf("set generator rate: %w", err)
	}
	ctx := xdpMD{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(g.ifindex)}
	limit := g.Limit
	if limit == 0 {
		limit = 10 * time.Minute
	}
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("generator ran past its limit of %v", limit)
		}
		_, err := g.prog.Run(&ebpf.RunOptions{
			Data: g.frame, Context: ctx, Repeat: 1 << 20,
			Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 64,
		})
		if err != nil {
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("live-frame BPF_PROG_RUN refused (needs Linux 5.18+): %w", err)
			}
			return fmt.Errorf("generate: %w", err)
		}
	}
}

// Probe runs the program once in live-frame mode with its pacing state
// set so far in the future that it drops the frame: whether this kernel
// lets the generator run, without sending anything. Call it from a thread
// in the sending namespace.
func (g *Generator) Probe() error {
	if err := g.state.Put(uint32(0), genState{Next: math.MaxUint64}); err != nil {
		return fmt.Errorf("set generator state: %w", err)
	}
	_, err := g.prog.Run(&ebpf.RunOptions{
		Data: g.frame, Context: xdpMD{DataEnd: uint32(len(g.frame)), IngressIfindex: uint32(g.ifindex)},
		Repeat: 1, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES, BatchSize: 1,
	})
	if err != nil {
		return fmt.Errorf("live-frame BPF_PROG_RUN: %w", err)
	}
	return nil
}

// Close unloads the program.
func (g *Generator) Close() error { return errors.Join(g.prog.Close(), g.state.Close()) }

// ipv4Frame builds an Ethernet/IPv4 frame carrying an l4Len-byte
// transport header of protocol proto, with a valid IP checksum, padded to
// 60 bytes (64 on the wire with the FCS). It returns the frame, the
// transport header, and the pseudo-header sum its checksum starts from.
func ipv4Frame(dst, src net.HardwareAddr, sip, dip netip.Addr, proto uint8, l4Len int) (f, l4 []byte, pseudo uint32) {
	f = make([]byte, max(60, 34+l4Len))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+l4Len))
	ip[8] = 64
	ip[9] = proto
	s, d := sip.As4(), dip.As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], packet.IPv4HeaderChecksum(ip))
	pseudo = packet.PseudoHeaderSum(sip, dip, proto, l4Len)
	return f, f[34 : 34+l4Len], pseudo
}

// UDPFrame builds a 60-byte Ethernet/IPv4/UDP frame (64 on the wire with
// the FCS) with valid checksums, to the discard port.
func UDPFrame(dst, src net.HardwareAddr, sip, dip netip.Addr) []byte {
	f, udp, ph := ipv4Frame(dst, src, sip, dip, unix.IPPROTO_UDP, 26)
	binary.BigEndian.PutUint16(udp[0:], 9)
	binary.BigEndian.PutUint16(udp[2:], 9)
	binary.BigEndian.PutUint16(udp[4:], 26)
	binary.BigEndian.PutUint16(udp[6:], packet.Checksum(udp, ph))
	return f
}

// TCPAckFrame builds a 60-byte Ethernet/IPv4/TCP ACK with valid checksums:
// an out-of-state segment (no flow), the shape of an ACK flood.
func TCPAckFrame(dst, src net.HardwareAddr, sip, dip netip.Addr) []byte {
	return tcpFrame(dst, src, sip, dip, 40000, 80, 0x12345678, 0x9abcdef0, 0x10 /* ACK */, 512, nil)
}

// tcpFrame builds an Ethernet/IPv4/TCP frame (60 bytes, or more with
// over 6 bytes of options) with valid checksums; opts is a multiple of 4
// bytes long, at most 40.
func tcpFrame(dst, src net.HardwareAddr, sip, dip netip.Addr, sport, dport uint16, seq, ack uint32, flags uint8, win uint16, opts []byte) []byte {
	f, tcp, ph := ipv4Frame(dst, src, sip, dip, unix.IPPROTO_TCP, 20+len(opts))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = uint8(5+len(opts)/4) << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], win)
	copy(tcp[20:], opts)
	binary.BigEndian.PutUint16(tcp[16:], packet.Checksum(tcp, ph))
	return f
}
