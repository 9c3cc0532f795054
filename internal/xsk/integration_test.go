package xsk_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// rig is the lab plus, in the gate namespace, one UMEM, a socket per queue
// on outer and inner, and the XDP program on outer (and inner when asked).
type rig struct {
	lab   *lab.Lab
	umem  *xsk.Umem
	outer []*xsk.Socket
	inner []*xsk.Socket
	progs []*xdpprog.Program
	atts  []*xdpprog.Attachment
}

// record finds the XDP program's record of a received descriptor and the
// frame without it, whichever carrier the kernel allowed.
func (r *rig) record(d xsk.Desc) (xdpprog.Meta, xsk.Desc, bool) {
	off := d.Addr % uint64(r.umem.FrameSize())
	m, strip, ok := r.progs[0].Carrier().Locate(r.umem.Area, d.Addr, d.Len, off)
	return m, xsk.Desc{Addr: d.Addr + uint64(strip), Len: d.Len - strip}, ok
}

func newRig(t *testing.T, cfg xsk.UmemConfig, attachInner bool) *rig {
	t.Helper()
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	r := &rig{lab: l}
	t.Cleanup(r.close)
	err := l.Do(l.GateNS, func() error {
		var err error
		if r.umem, err = xsk.NewUmem(cfg); err != nil {
			return err
		}
		for q := 0; q < l.Queues; q++ {
			s, err := r.umem.Open(xsk.SocketConfig{Ifindex: l.OuterIndex, Queue: q, RxSize: 2048, TxSize: 2048})
			if err != nil {
				return err
			}
			r.outer = append(r.outer, s)
			if s, err = r.umem.Open(xsk.SocketConfig{Ifindex: l.InnerIndex, Queue: q, RxSize: 2048, TxSize: 2048}); err != nil {
				return err
			}
			r.inner = append(r.inner, s)
		}
		attach := func(ifindex int, socks []*xsk.Socket) error {
			c, _, err := xdpprog.ChooseCarrier(xdpprog.CarrierAuto)
			if err != nil {
				return err
			}
			p, err := xdpprog.Load(len(socks), xdpprog.Options{Carrier: c})
			if err != nil {
				return err
			}
			r.progs = append(r.progs, p)
			for q, s := range socks {
				if err := p.Register(q, s.FD()); err != nil {
					return err
				}
			}
			a, err := p.Attach(ifindex, xdpprog.ModeNative)
			if err != nil {
				return err
			}
			r.atts = append(r.atts, a)
			return nil
		}
		if err := attach(l.OuterIndex, r.outer); err != nil {
			return err
		}
		if attachInner {
			return attach(l.InnerIndex, r.inner)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// close detaches before closing sockets, and closes the UMEM last.
func (r *rig) close() {
	for _, a := range r.atts {
		a.Close()
	}
	for _, p := range r.progs {
		p.Close()
	}
	if r.umem != nil {
		r.umem.Close()
	}
}

// post gives n frames starting at frame first to s's FILL ring.
func post(t *testing.T, u *xsk.Umem, s *xsk.Socket, first, n uint32) {
	t.Helper()
	addrs := make([]uint64, n)
	for i := range addrs {
		addrs[i] = u.FrameAddr(first + uint32(i))
	}
	if got, err := s.Fill.Put(addrs); err != nil || got != int(n) {
		t.Fatalf("fill put %d/%d: %v", got, n, err)
	}
}

// udpSender opens a UDP socket inside the client namespace.
func udpSender(t *testing.T, l *lab.Lab, srcPort int) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := l.Do(l.ClientNS, func() error {
		var err error
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: l.ClientIP4.AsSlice(), Port: srcPort},
			&net.UDPAddr{IP: l.ServerIP4.AsSlice(), Port: 9000})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func udpReceiver(t *testing.T, l *lab.Lab) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := l.Do(l.ServerNS, func() error {
		var err error
		c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: l.ServerIP4.AsSlice(), Port: 9000})
		if err != nil {
			return err
		}
		raw, _ := c.SyscallConn()
		raw.Control(func(fd uintptr) {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestReceiveOnOuter: frames sent from the client arrive on the outer
// sockets with the right bytes, and the XDP program's metadata says the
// length the descriptor says.
func TestReceiveOnOuter(t *testing.T) {
	r := newRig(t, xsk.UmemConfig{NumFrames: 8192}, false)
	// The program is attached before FILL is posted: a frame the client
	// sends on its own in between (an IPv6 router solicitation) finds FILL
	// empty and is dropped. Count drops from when FILL is stocked.
	base := make([]xsk.Statistics, len(r.outer))
	for q, s := range r.outer {
		post(t, r.umem, s, uint32(q)*2048, 2048)
		var err error
		if base[q], err = s.Stats(); err != nil {
			t.Fatal(err)
		}
	}
	const n = 200
	var senders []*net.UDPConn
	for p := 0; p < 8; p++ {
		// Different source ports spread the frames over both queues.
		senders = append(senders, udpSender(t, r.lab, 20000+p))
	}
	for i := 0; i < n; i++ {
		c := senders[i%len(senders)]
		if _, err := c.Write(fmt.Appendf(nil, "xskgate-rx-%04d", i)); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	perQueue := make([]int, len(r.outer))
	descs := make([]xsk.Desc, 64)
	deadline := time.Now().Add(5 * time.Second)
	for len(seen) < n && time.Now().Before(deadline) {
		for q, s := range r.outer {
			k, err := s.Rx.Get(descs)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range descs[:k] {
				if r.umem.Frame(d.Addr, d.Len) == nil {
					t.Fatalf("descriptor %+v outside the UMEM", d)
				}
				if off := d.Addr % uint64(r.umem.FrameSize()); off != r.umem.RxOffset() {
					t.Errorf("rx addr offset %d, want headroom+256 = %d", off, r.umem.RxOffset())
				}
				m, fd, ok := r.record(d)
				if (!ok && r.progs[0].Carrier() != xdpprog.CarrierNone) || m.Len != fd.Len || m.Queue != uint32(q) {
					t.Errorf("record %+v for desc %+v on queue %d (carrier %s)", m, d, q, r.progs[0].Carrier())
				}
				frame := r.umem.Frame(fd.Addr, fd.Len)
				if len(frame) < 42 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 || frame[23] != unix.IPPROTO_UDP {
					continue // e.g. an IPv6 router solicitation: not ours
				}
				if !strings.HasPrefix(string(frame[42:]), "xskgate-rx-") {
					t.Errorf("unexpected payload %q", frame[42:])
					continue
				}
				seen[string(frame[42:])] = true
				perQueue[q]++
			}
		}
	}
	if len(seen) != n {
		t.Fatalf("received %d distinct frames of %d", len(seen), n)
	}
	t.Logf("per queue: %v", perQueue)
	for q, s := range r.outer {
		st, err := s.Stats()
		if err != nil {
			t.Fatal(err)
		}
		b := base[q]
		if st.RxDropped != b.RxDropped || st.RxRingFull != b.RxRingFull || st.RxInvalidDescs != b.RxInvalidDescs {
			t.Errorf("queue %d stats %+v (at FILL post %+v): nothing should be dropped", q, st, b)
		}
		o, err := s.Options()
		if err != nil || o.ZeroCopy {
			t.Errorf("veth must be copy mode: %+v %v", o, err)
		}
	}
}

// TestForwardZeroCopy forwards sequenced UDP from outer RX to inner TX with
// the same UMEM address, in bursts of 1024, and checks that the server gets
// every frame exactly once. 40 bursts make a 0.1% duplicate rate show up
// as about 40 duplicates.
func TestForwardZeroCopy(t *testing.T) {
	r := newRig(t, xsk.UmemConfig{NumFrames: 8192}, false)
	for q, s := range r.outer {
		post(t, r.umem, s, uint32(q)*4096, 2048)
	}
	recv := udpReceiver(t, r.lab)
	senders := []*net.UDPConn{udpSender(t, r.lab, 30001), udpSender(t, r.lab, 30002), udpSender(t, r.lab, 30003), udpSender(t, r.lab, 30004)}
	const bursts, burst = 40, 1024
	got := make([]int, bursts*burst)
	descs := make([]xsk.Desc, 64)
	comp := make([]uint64, 64)
	inFlight := map[uint64]bool{}
	forwarded, sameAddr := 0, 0
	buf := make([]byte, 2048)
	pending := 0
	pump := func() {
		for q := range r.outer {
			k, err := r.outer[q].Rx.Get(descs)
			if err != nil {
				t.Fatal(err)
			}
			var tx []xsk.Desc
			for _, d := range descs[:k] {
				// Same frame on TX, without the record: the frame is not
				// copied in user space.
				_, d, _ = r.record(d)
				// The client's stack offloads its UDP checksum: complete it,
				// as the engine does, or the server drops the datagram.
				var pk packet.Packet
				if f := r.umem.Frame(d.Addr, d.Len); pk.Parse(f) == nil {
					packet.CompletePartial(&pk, f)
				}
				tx = append(tx, d)
				if inFlight[d.Addr] {
					t.Fatalf("frame %#x received while still on TX", d.Addr)
				}
				inFlight[d.Addr] = true
			}
			for len(tx) > 0 {
				n, err := r.inner[q].Tx.Put(tx)
				if err != nil {
					t.Fatal(err)
				}
				tx = tx[n:]
				forwarded += n
				for r.inner[q].Tx.Outstanding() > 0 {
					if e := r.inner[q].Kick(); e != 0 && e != unix.EAGAIN && e != unix.EBUSY {
						t.Fatalf("kick: %v", e)
					} else if e == unix.EAGAIN {
						break
					}
				}
			}
			// EAGAIN means "later", not "never": kick again each pass
			// while anything is left on TX.
			for tries := 0; r.inner[q].Tx.Outstanding() > 0 && tries < 4; tries++ {
				r.inner[q].Kick()
			}
			// Completions come back on the inner socket (the one that
			// sent), with the exact TX address; recycle to outer FILL.
			for {
				k, err := r.inner[q].Comp.Get(comp)
				if err != nil {
					t.Fatal(err)
				}
				if k == 0 {
					break
				}
				for _, a := range comp[:k] {
					if !inFlight[a] {
						t.Fatalf("completion of %#x that is not on TX", a)
					}
					delete(inFlight, a)
					sameAddr++
				}
				if n, err := r.outer[q].Fill.Put(comp[:k]); err != nil || n != k {
					t.Fatalf("refill %d/%d: %v", n, k, err)
				}
			}
		}
	}
	start := time.Now()
	for b := 0; b < bursts; b++ {
		for i := 0; i < burst; i++ {
			seq := b*burst + i
			var p [8]byte
			binary.BigEndian.PutUint64(p[:], uint64(seq))
			if _, err := senders[i%len(senders)].Write(p[:]); err != nil {
				t.Fatal(err)
			}
			pending++
			if i%64 == 63 {
				pump()
			}
		}
		deadline := time.Now().Add(3 * time.Second)
		for forwarded < (b+1)*burst && time.Now().Before(deadline) {
			pump()
		}
		// Keep pumping while reading: forwarded also counts the client's
		// own IPv6 frames (router solicitation, MLD), so it can reach the
		// target one UDP frame early.
		rdeadline := time.Now().Add(3 * time.Second)
		for rcvd := 0; rcvd < burst; rcvd++ {
			var n int
			var err error
			for {
				recv.SetReadDeadline(time.Now().Add(5 * time.Millisecond))
				if n, err = recv.Read(buf); err == nil || time.Now().After(rdeadline) {
					break
				}
				pump()
			}
			if err != nil {
				for q := range r.outer {
					so, _ := r.outer[q].Stats()
					si, _ := r.inner[q].Stats()
					t.Logf("queue %d: outer %+v inner %+v", q, so, si)
				}
				out, _ := r.lab.Command(t.Context(), r.lab.ServerNS, "nstat", "-az").CombinedOutput()
				t.Logf("server counters:\n%s", out)
				out, _ = r.lab.Command(t.Context(), r.lab.ServerNS, "ip", "-s", "link").CombinedOutput()
				t.Logf("server links:\n%s", out)
				out, _ = r.lab.Command(t.Context(), r.lab.GateNS, "ip", "-s", "link").CombinedOutput()
				t.Logf("gate links:\n%s", out)
				t.Fatalf("burst %d: received %d of %d: %v (forwarded %d)", b, rcvd, burst, err, forwarded)
			}
			if n != 8 {
				t.Fatalf("payload length %d", n)
			}
			got[binary.BigEndian.Uint64(buf)]++
		}
	}
	// Anything extra (a duplicate) would be waiting now.
	recv.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := recv.Read(buf); err == nil {
		t.Fatalf("extra datagram of %d bytes after all bursts: a duplicate", n)
	}
	for seq, c := range got {
		if c != 1 {
			t.Fatalf("sequence %d received %d times", seq, c)
		}
	}
	for time.Since(start) < 20*time.Second && len(inFlight) > 0 {
		pump()
	}
	if len(inFlight) != 0 {
		t.Fatalf("%d frames never completed", len(inFlight))
	}
	t.Logf("%d frames forwarded outer RX -> inner TX by address, %d completions matched", forwarded, sameAddr)
	for q := range r.inner {
		st, _ := r.inner[q].Stats()
		if st.TxInvalidDescs != 0 {
			t.Errorf("inner queue %d: %d invalid TX descriptors", q, st.TxInvalidDescs)
		}
	}
}

// TestTransmitLeaves puts a hand-made frame on inner's TX ring and sees it
// arrive in the server namespace.
func TestTransmitLeaves(t *testing.T) {
	r := newRig(t, xsk.UmemConfig{}, false)
	recv := udpReceiver(t, r.lab)
	l := r.lab
	payload := []byte("made in the UMEM")
	frame := udpFrame(l.ServerMAC, l.InnerMAC, l.ClientIP4, l.ServerIP4, 7777, 9000, payload)
	addr := r.umem.FrameAddr(100)
	copy(r.umem.Frame(addr, uint32(len(frame))), frame)
	s := r.inner[1]
	if n, err := s.Tx.Put([]xsk.Desc{{Addr: addr, Len: uint32(len(frame))}}); n != 1 || err != nil {
		t.Fatal(n, err)
	}
	if e := s.Kick(); e != 0 {
		t.Fatalf("kick: %v", e)
	}
	recv.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 100)
	n, from, err := recv.ReadFromUDP(buf)
	if err != nil || string(buf[:n]) != string(payload) || from.Port != 7777 {
		t.Fatalf("got %q from %v: %v", buf[:n], from, err)
	}
	comp := make([]uint64, 4)
	deadline := time.Now().Add(time.Second)
	k := 0
	for k == 0 && time.Now().Before(deadline) {
		k, _ = s.Comp.Get(comp)
	}
	if k != 1 || comp[0] != addr {
		t.Fatalf("completion %v, want [%#x]", comp[:k], addr)
	}
}

// udpFrame builds Ethernet/IPv4/UDP with a zero UDP checksum (legal on IPv4).
func udpFrame(dst, src net.HardwareAddr, sip, dip netip.Addr, sport, dport uint16, payload []byte) []byte {
	f := make([]byte, 42+len(payload))
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = unix.IPPROTO_UDP
	s4, d4 := sip.As4(), dip.As4()
	copy(ip[12:], s4[:])
	copy(ip[16:], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	binary.BigEndian.PutUint16(f[34:], sport)
	binary.BigEndian.PutUint16(f[36:], dport)
	binary.BigEndian.PutUint16(f[38:], uint16(8+len(payload)))
	copy(f[42:], payload)
	return f
}

// TestStatisticsCount starves FILL and checks XDP_STATISTICS shows it.
func TestStatisticsCount(t *testing.T) {
	r := newRig(t, xsk.UmemConfig{}, false)
	// Nothing posted to FILL: every frame redirected to an XSK is dropped.
	c := udpSender(t, r.lab, 40000)
	for i := 0; i < 50; i++ {
		c.Write([]byte("starved"))
	}
	// The frames are in flight for a while: wait for the counters, with
	// a deadline, not for a time.
	var dropped, empty uint64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		dropped, empty = 0, 0
		for _, s := range r.outer {
			st, err := s.Stats()
			if err != nil {
				t.Fatal(err)
			}
			dropped += st.RxDropped
			empty += st.RxFillRingEmptyDescs
		}
		if dropped >= 50 && empty >= 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10 s: rx_dropped %d, rx_fill_ring_empty_descs %d: want >= 50 each", dropped, empty)
		}
	}
	// An empty kick counts in tx_ring_empty_descs.
	s := r.inner[0]
	before, _ := s.Stats()
	s.Kick()
	after, _ := s.Stats()
	if after.TxRingEmptyDescs != before.TxRingEmptyDescs+1 {
		t.Fatalf("tx_ring_empty_descs %d -> %d", before.TxRingEmptyDescs, after.TxRingEmptyDescs)
	}
}

// TestSetupErrors: each bad input gets a clear error.
func TestSetupErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  xsk.UmemConfig
		want string
	}{
		{xsk.UmemConfig{FrameSize: 3000}, "power of two"},
		{xsk.UmemConfig{FrameSize: 1024}, "between 2048"},
		{xsk.UmemConfig{FrameSize: 8192}, "between 2048"},
		{xsk.UmemConfig{FillSize: 1000}, "fill ring size 1000 is not a power of two"},
		{xsk.UmemConfig{Headroom: 4000}, "headroom"},
	} {
		if _, err := xsk.NewUmem(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("socket errors need root: run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 2})
	err := l.Do(l.GateNS, func() error {
		u, err := xsk.NewUmem(xsk.UmemConfig{Mode: xsk.ModeZeroCopy})
		if err != nil {
			return err
		}
		defer u.Close()
		for _, tc := range []struct {
			sc   xsk.SocketConfig
			want string
		}{
			{xsk.SocketConfig{Ifindex: 9999, RxSize: 64}, "not found"},
			{xsk.SocketConfig{Ifindex: l.OuterIndex, Queue: 5, RxSize: 64}, "has 2 queues, queue 5 does not exist"},
			{xsk.SocketConfig{Ifindex: l.OuterIndex, RxSize: 100}, "rx ring size 100 is not a power of two"},
			{xsk.SocketConfig{Ifindex: l.OuterIndex, RxSize: 64}, "zero-copy"},
		} {
			if _, err := u.Open(tc.sc); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%+v: err %v, want %q", tc.sc, err, tc.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestNothingLeftBehind: after a full rig is closed, the process has the
// same file descriptors and mappings as before, the interface has no XDP
// program, and after the lab is down no namespace remains.
func TestNothingLeftBehind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: run the tests as root")
	}
	fds0, maps0 := countFDs(t), countMaps(t)
	var prefix, umemStart string
	t.Run("rig", func(t *testing.T) {
		r := newRig(t, xsk.UmemConfig{}, true)
		prefix = r.lab.Prefix
		umemStart = fmt.Sprintf("%x-", unsafe.Pointer(&r.umem.Area[0]))
		for q, s := range r.outer {
			post(t, r.umem, s, uint32(q)*256, 128)
		}
		r.close()
		r.progs, r.atts, r.umem = nil, nil, nil
		err := r.lab.Do(r.lab.GateNS, func() error {
			for _, name := range []string{lab.OuterName, lab.InnerName} {
				link, err := netlink.LinkByName(name)
				if err != nil {
					return err
				}
				if x := link.Attrs().Xdp; x != nil && x.Attached {
					return fmt.Errorf("%s still has XDP program %d", name, x.ProgId)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	if fds := countFDs(t); fds != fds0 {
		t.Errorf("open fds %d, before %d", fds, fds0)
	}
	if m := countMaps(t); m != maps0 {
		b, _ := os.ReadFile("/proc/self/maps")
		t.Errorf("kernel object mappings %d, before %d\n%s", m, maps0, b)
	}
	if b, _ := os.ReadFile("/proc/self/maps"); strings.Contains(string(b), umemStart) {
		t.Errorf("the UMEM mapping at %s is still there", umemStart)
	}
	if _, err := netns.GetFromName(prefix + "-gate"); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("namespace %s-gate still exists (err %v)", prefix, err)
	}
}

func countFDs(t *testing.T) int {
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// countMaps counts the mappings of kernel objects: AF_XDP rings (the
// socket), BPF maps. Plain anonymous memory is the Go runtime's business
// (heap growth, thread stacks), except the UMEM, which the test checks by
// address. cilium/ebpf unmaps a closed map's memory in a GC cleanup, so
// collect first.
func countMaps(t *testing.T) int {
	runtime.GC()
	runtime.GC()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "anon_inode:") + strings.Count(string(b), "socket:") + strings.Count(string(b), "xdp")
}
