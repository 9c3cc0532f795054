package protect

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/traffic"
)

// rig is a lab with the gate running an Inspector and a traffic server on
// the server's IPv4 and IPv6 addresses, port 5201.
type rig struct {
	l *lab.Lab
	i *Inspector
	g *gate.Gate
}

// kernelDrops sums what the kernel dropped before the gate's outer
// sockets (no FILL buffer, RX ring full): frames counted, never judged.
func (r *rig) kernelDrops() uint64 {
	var n uint64
	for _, s := range r.g.Outer {
		if st, err := s.Stats(); err == nil {
			n += st.RxDropped + st.RxRingFull
		}
	}
	return n
}

const port = 5201

func newRig(t *testing.T, cfg Config) *rig { return newRigFL(t, cfg, false) }

// newRigFL is newRig with the XDP first line loaded and fed when fl.
func newRigFL(t *testing.T, cfg Config, fl bool) *rig { return newRigWrapped(t, cfg, fl, nil) }

// newRigWrapped is newRigFL whose gate runs wrap(Inspector) instead of the
// Inspector itself, when wrap is set (a test's fault in the data path).
func newRigWrapped(t *testing.T, cfg Config, fl bool, wrap func(*Inspector) engine.Inspector) *rig {
	return newRigWith(t, cfg, rigOptions{firstLine: fl, wrap: wrap})
}

// rigOptions are newRigWith's choices beyond the protection's config.
type rigOptions struct {
	firstLine bool                              // the XDP first line, fed
	wrap      func(*Inspector) engine.Inspector // see newRigWrapped
	fastPath  bool                              // the kernel fast path, fed (swept by the test)
	table     *flow.Table                       // nil: a new one of 1<<16 flows
}

func newRigWith(t *testing.T, cfg Config, o rigOptions) *rig {
	t.Helper()
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	i, err := New(cfg, Options{Workers: 2, FlowCapacity: 1 << 16, Table: o.table})
	if err != nil {
		t.Fatal(err)
	}
	var insp engine.Inspector = i
	if o.wrap != nil {
		insp = o.wrap(i)
	}
	var g *gate.Gate
	if err := l.Do(l.GateNS, func() error {
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: 2,
			Engine: engine.Config{Inspector: insp}, FirstLine: o.firstLine, FirstLineFlows: 1 << 16, FastPath: o.fastPath})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if o.firstLine {
		if err := i.SetFirstLine(g.FirstLine(), g.XDPTxErrors); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go i.RunFirstLine(ctx)
	}
	if o.fastPath {
		fp, why := g.FastPath()
		if fp == nil {
			g.Close()
			t.Skipf("no fast path on this kernel: %s", why)
		}
		i.SetFastPath(fp)
	}
	g.Start()
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("gate close: %v", err)
		}
	})
	l.ServeForTest(t, port)
	return &rig{l: l, i: i, g: g}
}

func labConfig(mode Mode) Config {
	c := Config{
		Enabled:  true,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/32"), netip.MustParsePrefix("2001:2::2/128")},
		Rules: []Rule{
			{Name: "v4", Scope: netip.MustParsePrefix("198.18.0.2/32"), Mode: mode},
			{Name: "v6", Scope: netip.MustParsePrefix("2001:2::2/128"), Mode: mode},
		},
		Log: LogConfig{Quiet: true},
	}
	return c
}

// exchange runs n verified connections in parallel (alternating IPv4 and
// IPv6) and fails the test on any error.
func (r *rig) exchange(t *testing.T, n int, size int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dst := netip.AddrPortFrom(r.l.ServerIP4, port)
			if k%2 == 1 {
				dst = netip.AddrPortFrom(r.l.ServerIP6, port)
			}
			var c net.Conn
			err := r.l.Do(r.l.ClientNS, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", dst.String())
				return err
			})
			if err != nil {
				errs <- fmt.Errorf("dial %s: %w", dst, err)
				return
			}
			if res := traffic.Exchange(ctx, c, uint64(k+1), size, size); res.Err != nil {
				errs <- fmt.Errorf("%s: %w", dst, res.Err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// rawSender sends hand-built frames from the client's eth0 (AF_PACKET).
type rawSender struct {
	fd int
	sa unix.SockaddrLinklayer
}

func newRawSender(t *testing.T, l *lab.Lab) *rawSender {
	t.Helper()
	s := &rawSender{fd: -1}
	if err := l.Do(l.ClientNS, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		s.fd = fd
		s.sa = unix.SockaddrLinklayer{Ifindex: l.ClientIndex, Halen: 6}
		copy(s.sa.Addr[:], l.ServerMAC)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(s.fd) })
	return s
}

// flood sends n frames made by mk, paced in bursts so that the gate's RX
// rings are not the thing dropping them. A frame the client's veth refuses
// for the moment (ENOBUFS: its ring toward the gate is full) is sent again
// after a pause, within a minute for the whole flood. It may run on a
// goroutine of its own, so it reports with Errorf and returns.
func (s *rawSender) flood(t *testing.T, l *lab.Lab, n int, mk func(k int) tseg) int {
	t.Helper()
	sent := 0
	deadline := time.Now().Add(time.Minute)
	for k := range n {
		sg := mk(k)
		f := sg.frame()
		copy(f[0:6], l.ServerMAC)
		copy(f[6:12], l.ClientMAC)
		for {
			err := unix.Sendto(s.fd, f, 0, &s.sa)
			if err == nil {
				break
			}
			if err != unix.ENOBUFS || time.Now().After(deadline) {
				t.Errorf("sendto frame %d of %d: %v", k, n, err)
				return sent
			}
			time.Sleep(100 * time.Microsecond)
		}
		sent++
		if k%64 == 63 {
			time.Sleep(200 * time.Microsecond)
		}
	}
	return sent
}

// synCounter counts SYNs (without ACK) from source ports in [lo, hi)
// arriving on the server's eth0. Its socket sees every packet there, so a
// legitimate transfer can overflow its receive buffer: what it dropped is
// counted (lost) and a flood SYN among them is accounted for, not missing.
type synCounter struct {
	fd   int
	n    atomic.Int64
	done chan struct{}
	lost uint64 // PACKET_STATISTICS drops, summed (reading resets them)
}

// dropped returns how many packets the counter's socket has dropped so far.
func (c *synCounter) dropped() uint64 {
	if c.fd >= 0 {
		if st, err := unix.GetsockoptTpacketStats(c.fd, unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.lost += uint64(st.Drops)
		}
	}
	return c.lost
}

func newSynCounter(t *testing.T, l *lab.Lab, lo, hi uint16) *synCounter {
	t.Helper()
	c := &synCounter{fd: -1, done: make(chan struct{})}
	if err := l.Do(l.ServerNS, func() error {
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		c.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.ServerIndex})
	}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Usec: 100000}
	unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	// Room for bursts of the legitimate transfers it also sees; drops are
	// counted all the same (dropped).
	unix.SetsockoptInt(c.fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	fd := c.fd // stop writes c.fd while this goroutine runs
	go func() {
		defer close(c.done)
		buf := make([]byte, 2048)
		var p packet.Packet
		for {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					continue
				}
				return // closed
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if p.Parse(buf[:n]) == nil && p.Proto == packet.ProtoTCP && p.L4Off >= 0 &&
				p.TCP.Flags&(packet.SYN|packet.ACK) == packet.SYN && p.SrcPort >= lo && p.SrcPort < hi {
				c.n.Add(1)
			}
		}
	}()
	t.Cleanup(func() { c.stop() })
	return c
}

func (c *synCounter) stop() {
	if c.fd >= 0 {
		c.dropped()
		unix.Shutdown(c.fd, unix.SHUT_RDWR)
		unix.Close(c.fd)
		c.fd = -1
		<-c.done
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func floodACK(l *lab.Lab) func(k int) tseg {
	return func(k int) tseg {
		x := uint32(k)*2654435761 + 12345
		return tseg{src: l.ClientIP4, dst: l.ServerIP4, sport: uint16(20000 + k%10000), dport: port,
			seq: x, ack: x ^ 0x5a5a5a5a, flags: packet.ACK, win: 512, ws: -1}
	}
}

// floodACK6 is floodACK over IPv6.
func floodACK6(l *lab.Lab) func(k int) tseg {
	return func(k int) tseg {
		s := floodACK(l)(k)
		s.src, s.dst = l.ClientIP6, l.ServerIP6
		return s
	}
}

func serverRx(t *testing.T, l *lab.Lab) uint64 {
	t.Helper()
	rx, _, err := l.LinkStats(l.ServerNS, lab.HostIfName)
	if err != nil {
		t.Fatal(err)
	}
	return rx
}

// TestLabLegitimate: verified connections through mitigate mode, first
// tracked (SYNs under threshold), then all SYN-proxied (threshold 0: every
// SYN is challenged), then with rules reloaded while connections run.
func TestLabLegitimate(t *testing.T) {
	cfg := labConfig(ModeMitigate)
	for k := range cfg.Rules {
		cfg.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
	}
	r := newRig(t, cfg)
	t.Run("tracked", func(t *testing.T) {
		r.exchange(t, 8, 1<<20)
		if st := r.i.Stats(); st.Count("", "drop", "drop") > 0 || st.Cookies["sent"] != 0 {
			t.Errorf("drops or challenges on legitimate traffic: %+v %+v", st.Decisions, st.Cookies)
		}
	})
	t.Run("proxied", func(t *testing.T) {
		c := labConfig(ModeMitigate) // SYN rate 0: always challenge
		if err := r.i.Reload(c); err != nil {
			t.Fatal(err)
		}
		r.exchange(t, 8, 1<<20)
		st := r.i.Stats()
		if st.Cookies["sent"] < 8 || st.Cookies["valid"] < 8 || st.Count("proxy_established", "", "") < 8 {
			t.Fatalf("connections not proxied: %+v %+v", st.Cookies, st.Decisions)
		}
	})
	t.Run("reload under traffic", func(t *testing.T) {
		reloads := r.reloadDuring(t, func(k int) Config {
			c := labConfig(ModeMitigate)
			if k%2 == 0 {
				for k := range c.Rules {
					c.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
				}
			}
			return c
		}, func() { r.exchange(t, 8, 4<<20) })
		if reloads < 3 {
			t.Errorf("only %d reloads during the traffic", reloads)
		}
	})
}

// reloadDuring reloads the Inspector with cfg(k) for the k-th reload,
// every 20 ms while run runs, and returns how many reloads it made.
func (r *rig) reloadDuring(t *testing.T, cfg func(k int) Config, run func()) int {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	reloads := 0
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if err := r.i.Reload(cfg(reloads)); err != nil {
				t.Error(err)
				return
			}
			reloads++
		}
	}()
	run()
	close(stop)
	wg.Wait()
	return reloads
}

// TestLabACKFlood: an ACK flood is dropped before the server while a
// legitimate connection runs; in monitor mode it passes but is counted.
// Every bound comes from what was measured: the frames the gate judged
// (the kernel may drop raw frames before that, counted), the out-of-state
// meter's burst plus its rate over the time it ran, and the losses counted
// between the gate and the server.
func TestLabACKFlood(t *testing.T) {
	const n = 20000
	for _, mode := range []Mode{ModeMitigate, ModeMonitor} {
		t.Run(string(mode), func(t *testing.T) {
			cfg := labConfig(mode)
			const oosRate, oosBurst = 100, 200
			for k := range cfg.Rules {
				cfg.Rules[k].SynFlood = SynFloodRule{Rate: 100000, Burst: 100000}
				cfg.Rules[k].OutOfState = OutOfStateRule{Rate: oosRate, Burst: oosBurst}
			}
			start := time.Now() // the meter starts full when the Inspector is made
			r := newRig(t, cfg)
			snd := newRawSender(t, r.l)
			before := serverRx(t, r.l)
			beforeLoss := r.innerLoss(t)
			clientDrops0 := linkDrops(t, r.l, r.l.ClientNS, lab.HostIfName).tx
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { defer wg.Done(); r.exchange(t, 1, 256<<10) }()
			sent := snd.flood(t, r.l, n, floodACK(r.l))
			wg.Wait()
			// Every flood frame is judged or dropped by a kernel in front
			// of the gate (counted): wait for that, not for a time.
			var st Stats
			var nf, kd, cd uint64
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				st = r.i.Stats()
				nf, kd = notFound(&st), r.kernelDrops()
				cd = linkDrops(t, r.l, r.l.ClientNS, lab.HostIfName).tx - clientDrops0
				if nf+kd+cd >= uint64(sent) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 10 s, %d of %d flood frames judged, %d dropped by the gate's kernel, %d by the client's", nf, sent, kd, cd)
				}
			}
			// The meter lets through at most its burst (plus the one
			// packet GCRA tolerates) and its rate over its lifetime.
			allow := uint64(oosBurst+1) + uint64(math.Ceil(oosRate*time.Since(start).Seconds()))
			t.Logf("%s: sent %d, kernel drops %d (client %d), not_found %d (drop/drop %d, drop/pass %d, pass %d), meter allowance %d", mode, sent, kd, cd,
				nf, st.Count("not_found", "drop", "drop"), st.Count("not_found", "drop", "pass"), st.Count("not_found", "pass", ""), allow)
			if mode == ModeMitigate {
				if d := st.Count("not_found", "drop", "drop"); d+allow < nf {
					t.Errorf("dropped %d of %d judged, the meter allows only %d through", d, nf, allow)
				}
				if delta := serverRx(t, r.l) - before; delta > uint64(sent)/10 {
					t.Errorf("server received %d packets during a flood of %d", delta, sent)
				}
				return
			}
			if st.Count("", "", "drop") != 0 {
				t.Errorf("monitor mode dropped: %+v", st.Decisions)
			}
			if wd := st.Count("not_found", "drop", "pass"); wd+allow < nf {
				t.Errorf("monitor counted %d would-be drops of %d judged, the meter allows only %d: %+v", wd, nf, allow, st.Decisions)
			}
			// Every judged frame passes: it reaches the server's eth0
			// unless a loss on the way is counted (the engine's inner TX
			// drops, veth drops). Wait for that with a deadline.
			var delta, loss uint64
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				delta, loss = serverRx(t, r.l)-before, r.innerLoss(t)-beforeLoss
				if delta+loss >= nf {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("monitor: after 10 s the server received %d packets and %d were dropped on the way, of %d flood frames judged", delta, loss, nf)
					break
				}
			}
			t.Logf("monitor: server eth0 rx delta %d, counted losses after the gate %d", delta, loss)
		})
	}
}

// notFound counts inbound segments judged out of state.
func notFound(st *Stats) uint64 {
	var n uint64
	for _, d := range st.Decisions {
		if d.Dir == "inbound" && d.Reason == "not_found" {
			n += d.N
		}
	}
	return n
}

// innerLoss counts frames lost, counted, between the Inspector and the
// server's eth0: the engine's drops on the inner side (TX ring full) and
// the veth pair's drops (the gate's inner tx_dropped, the server's
// rx_dropped).
func (r *rig) innerLoss(t *testing.T) uint64 {
	t.Helper()
	var n uint64
	for _, w := range r.g.Engine.Workers() {
		for why := range w.Stats[engine.Inner].Drops {
			n += w.Stats[engine.Inner].Drops[why].Load()
		}
	}
	return n + linkDrops(t, r.l, r.l.GateNS, lab.InnerName).tx + linkDrops(t, r.l, r.l.ServerNS, lab.HostIfName).rx
}

type drops struct{ rx, tx uint64 }

// linkDrops reads the kernel's drop counters of ifname in ns.
func linkDrops(t *testing.T, l *lab.Lab, ns, ifname string) drops {
	t.Helper()
	var d drops
	if err := l.Do(ns, func() error {
		link, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if st := link.Attrs().Statistics; st != nil {
			d = drops{st.RxDropped, st.TxDropped}
		}
		return nil
	}); err != nil {
		t.Fatalf("drop counters of %s in %s: %v", ifname, ns, err)
	}
	return d
}

// TestLabSYNFlood: with the challenge action, no flood SYN reaches the
// server (none at all with rate 0; with a threshold, only the burst let
// through before the meter trips), and a legitimate client connects on its
// first try through the SYN proxy, data verified.
func TestLabSYNFlood(t *testing.T) {
	for _, tc := range []struct {
		name        string
		rate, burst uint32
	}{
		{"always-challenge", 0, 0},
		{"threshold", 200, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := labConfig(ModeMitigate)
			for k := range cfg.Rules {
				cfg.Rules[k].SynFlood = SynFloodRule{Rate: tc.rate, Burst: tc.burst, Action: ActionChallenge}
			}
			r := newRig(t, cfg)
			cnt := newSynCounter(t, r.l, 20000, 30000)
			snd := newRawSender(t, r.l)
			const n = 5000
			synAt := func(k int) tseg {
				return tseg{src: r.l.ClientIP4, dst: r.l.ServerIP4, sport: uint16(20000 + k%10000), dport: port,
					seq: uint32(k) * 2654435761, flags: packet.SYN, win: 64240, mss: 1460, ws: 7, sack: true}
			}
			// The first fifth trips the meter; legitimate clients then
			// connect while the rest of the flood runs, so their SYNs are
			// challenged too.
			clientDrops0, innerLoss0 := linkDrops(t, r.l, r.l.ClientNS, lab.HostIfName).tx, r.innerLoss(t)
			start := time.Now()
			snd.flood(t, r.l, n/5, synAt)
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				snd.flood(t, r.l, n-n/5, func(k int) tseg { return synAt(k + n/5) })
			}()
			r.exchange(t, 4, 1<<20)
			wg.Wait()
			// Wait until every flood SYN is accounted for: challenged or
			// dropped by the Inspector, seen by the server, or dropped by
			// a kernel or the engine on the way, or by the counter's own
			// socket (all counted). A deadline, not a
			// failure: a SYN lost after the gate would keep the count
			// short, and the bound below holds however long this takes.
			accounted := func() (challenged, kernel uint64) {
				st := r.i.Stats()
				return st.Count("challenge_needed", "", "") + st.Count("challenge_rate_limited", "", ""),
					r.kernelDrops() + linkDrops(t, r.l, r.l.ClientNS, lab.HostIfName).tx - clientDrops0 +
						r.innerLoss(t) - innerLoss0 + cnt.dropped()
			}
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if ch, kd := accounted(); ch+uint64(cnt.n.Load())+kd >= n {
					break
				}
			}
			// The meter refills at its rate while the flood runs: what may
			// pass is its burst (plus the one packet GCRA tolerates) and
			// rate × the time from the first flood SYN to the moment the
			// counter stopped, taken after it stopped so that every SYN it
			// counted was judged within that time. Never a fixed number.
			cnt.stop()
			elapsed := time.Since(start)
			st := r.i.Stats()
			allow := int64(0)
			if tc.rate > 0 {
				allow = int64(tc.burst) + 1 + int64(math.Ceil(float64(tc.rate)*elapsed.Seconds()))
			}
			t.Logf("flood %d SYNs in %v: cookies %+v; flood SYNs seen by the server: %d (allowed %d)", n, elapsed, st.Cookies, cnt.n.Load(), allow)
			if got := cnt.n.Load(); got > allow {
				t.Errorf("server saw %d flood SYNs, want at most burst %d + 1 + rate %d/s × %v = %d", got, tc.burst, tc.rate, elapsed, allow)
			}
			// Every flood SYN the gate judged and did not let through was
			// challenged (or refused for the challenge budget).
			if ch, kd := accounted(); ch+uint64(cnt.n.Load())+kd < n {
				t.Errorf("of %d flood SYNs, %d challenged, %d seen by the server, %d dropped on the way (counted): the rest unaccounted for", n, ch, cnt.n.Load(), kd)
			}
			if st.Cookies["valid"] == 0 {
				t.Errorf("no legitimate client passed a challenge")
			}
		})
	}
}
