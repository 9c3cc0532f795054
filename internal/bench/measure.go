package bench

// Measuring one run of a variant: frames and rates, the counters read before
// and after, CPU time, and TCP goodput through iperf3.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/lab"
)

// measure runs one window and returns delivered and offered packets/s.
func (b *bencher) measure(ctx context.Context, v Variant, rate float64) (pps, offered float64, drops uint64, err error) {
	sm, err := b.measureAll(ctx, v, rate)
	return sm.pps, sm.offered, sm.drops, err
}

// gateSyscalls sums the workers' sendto kicks, poll sleeps and loop
// iterations.
func gateSyscalls(g *gate.Gate) (kicks, polls, iters uint64) {
	if g == nil {
		return 0, 0, 0
	}
	for _, w := range g.Engine.Workers() {
		for s := range w.Stats {
			kicks += w.Stats[s].Kicks.Load()
			polls += w.Stats[s].Wakeups.Load()
		}
		iters += w.Iterations()
	}
	return kicks, polls, iters
}

// gateRx sums what the gate's workers received on outer.
func gateRx(g *gate.Gate) (n uint64) {
	if g == nil {
		return 0
	}
	for _, w := range g.Engine.Workers() {
		n += w.Stats[engine.Outer].RxPackets.Load()
	}
	return n
}

// sample is one run's figures.
type sample struct {
	pps, offered, handled float64 // delivered, generated, received by the gate's workers (per s)
	drops                 uint64  // the engine's own drops
	busy                  float64 // GateCPU's busy share
	kicks, polls, iters   uint64  // the gate's sendto kicks, poll sleeps, loop iterations
	flood                 FloodSample
	napi                  NAPICost // with Options.NAPIThread, for floods and the XDP_DROP ceiling
}

// frameFor returns the variant's frames (sent in turn) and what varies in
// them.
func (b *bencher) frameFor(v Variant) ([][]byte, Varier) {
	l := b.l
	dst := l.ServerMAC
	if v.Kernel {
		dst = l.OuterMAC // the gate is a router now
	}
	one := func(f []byte) [][]byte { return [][]byte{f} }
	switch {
	case v.Flood == FloodSYN && v.LinuxSYN:
		return one(TCPSynFrameLinux(dst, l.ClientMAC, l.ServerIP4)), Spoofer{}
	case v.Flood == FloodSYN:
		return one(TCPSynFrame(dst, l.ClientMAC, l.ServerIP4)), Spoofer{}
	case v.Flood == FloodACK:
		return one(TCPFloodAckFrame(dst, l.ClientMAC, l.ServerIP4)), Spoofer{}
	case v.AckFlood:
		return one(TCPAckFrame(dst, l.ClientMAC, l.ClientIP4, l.ServerIP4)), nil
	}
	return b.o.Size.frames(dst, l.ClientMAC, l.ClientIP4, l.ServerIP4), nil
}

func (b *bencher) measureAll(ctx context.Context, v Variant, rate float64) (sm sample, err error) {
	l := b.l
	d, err := b.setup(v)
	if err != nil {
		return sm, err
	}
	defer d.teardown()
	unlimit, err := b.limitDUT(d)
	if err != nil {
		return sm, err
	}
	defer unlimit()
	if !v.Ceiling {
		unsink, err := b.sink(v)
		if err != nil {
			return sm, err
		}
		defer unsink()
	}
	undo, err := b.clientExtras(v)
	if err != nil {
		return sm, err
	}
	defer undo()
	var napi *napiThreads
	if b.o.NAPIThread && (v.Flood != "" || (v.Ceiling && !v.TCSink)) {
		if napi, err = b.napiThread(b.o.GateCPU); err != nil {
			return sm, err
		}
		defer napi.Close()
	}
	frames, vary := b.frameFor(v)
	gen, err := newSource(l, b.gen, frames, vary, b.o.Warmup+b.o.Window+time.Minute, b.o.GenNice)
	if err != nil {
		return sm, err
	}
	defer gen.Close()
	// Where the frames are counted: at the server's eth0, or for the
	// ceiling at outer, the generator's peer.
	rxNS, rxIf := l.ServerNS, lab.HostIfName
	switch {
	case v.Ceiling:
		rxNS, rxIf = l.GateNS, lab.OuterName
	case v.External:
		rxNS = l.ClientNS
	}
	var f0, f1, f2 floodSnap
	if v.Flood != "" {
		if f0, err = b.floodSnap(v, d, gen); err != nil {
			return sm, err
		}
	}
	stop := make(chan struct{})
	genErr := make(chan error, 1)
	go func() {
		genErr <- l.Do(l.ClientNS, func() error { return gen.Run(b.o.GenCPU, rate, stop) })
	}()
	genDone := false // its result was taken: do not wait for it again
	wait := func(dur time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-genErr:
			genDone = true
			if err == nil {
				err = errors.New("it returned early")
			}
			return fmt.Errorf("generator stopped: %w", err)
		case <-time.After(dur):
			return nil
		}
	}
	defer func() {
		close(stop)
		if genDone {
			return
		}
		if e := <-genErr; e != nil && err == nil {
			err = e
		}
	}()
	if err := wait(b.o.Warmup); err != nil {
		return sm, err
	}
	r0, _, err := l.LinkStats(rxNS, rxIf)
	if err != nil {
		return sm, err
	}
	if v.Flood != "" {
		if f1, err = b.floodSnap(v, d, gen); err != nil {
			return sm, err
		}
	}
	var n0 napiSnap
	if napi != nil {
		if n0, err = b.napiSnap(napi); err != nil {
			return sm, err
		}
	}
	c0 := cpuTimes(b.o.GateCPU)
	k0, p0, i0 := gateSyscalls(d.g)
	s0, h0, t0 := gen.Sent(), gateRx(d.g), time.Now()
	if err := wait(b.o.Window); err != nil {
		return sm, err
	}
	r1, _, err := l.LinkStats(rxNS, rxIf)
	if err != nil {
		return sm, err
	}
	s1, h1, dt := gen.Sent(), gateRx(d.g), time.Since(t0).Seconds()
	sm.busy = c0.busyUntil(cpuTimes(b.o.GateCPU))
	if napi != nil {
		n1, err := b.napiSnap(napi)
		if err != nil {
			return sm, err
		}
		sm.napi = napiCost(n0, n1, d.g != nil)
	}
	k1, p1, i1 := gateSyscalls(d.g)
	sm.kicks, sm.polls, sm.iters = k1-k0, p1-p0, i1-i0
	if v.Flood != "" {
		if f2, err = b.floodSnap(v, d, gen); err != nil {
			return sm, err
		}
		sm.flood = floodSample(f0, f1, f2, dt)
	}
	if d.g != nil {
		for _, w := range d.g.Engine.Workers() {
			for s := range w.Stats {
				for r := range w.Stats[s].Drops {
					sm.drops += w.Stats[s].Drops[r].Load()
				}
			}
		}
	}
	sm.pps, sm.offered, sm.handled = float64(r1-r0)/dt, float64(s1-s0)/dt, float64(h1-h0)/dt
	sm.flood.Server = sm.pps
	return sm, nil
}

// tcpResult is one iperf3 run: goodput and what the senders' TCP saw,
// which says whether a path holds TCP back by loss (retransmits), delay
// (RTT) or window (cwnd).
type tcpResult struct {
	Gbps        float64
	Retransmits int
	MeanRTT     time.Duration // mean over streams of iperf3's mean_rtt
	MaxCwnd     int           // bytes, the largest over streams
	// CPUs are GenCPU and GateCPU, Busy their busy shares while iperf3
	// ran (endpoints, gate and kernel together: the lab has no others).
	CPUs [2]int
	Busy [2]float64
}

func (r tcpResult) String() string {
	s := fmt.Sprintf("%6.2f Gbit/s, retrans %d, rtt %v, max cwnd %d KB", r.Gbps, r.Retransmits, r.MeanRTT, r.MaxCwnd>>10)
	if r.Busy != [2]float64{} && r.Gbps > 0 {
		s += fmt.Sprintf(", CPU%d %.0f%% CPU%d %.0f%% (%.2f cores per 10 Gbit/s)",
			r.CPUs[0], 100*r.Busy[0], r.CPUs[1], 100*r.Busy[1], 10*(r.Busy[0]+r.Busy[1])/r.Gbps)
	}
	return s
}

// tcp runs iperf3 from client to server through the variant's path.
func (b *bencher) tcp(ctx context.Context, v Variant, streams int) (tcpResult, error) {
	l := b.l
	d, err := b.setup(v)
	if err != nil {
		return tcpResult{}, err
	}
	defer d.teardown()
	var pin []string
	if !b.o.TCPFree {
		pin = []string{"-A", strconv.Itoa(b.o.GenCPU)}
	}
	srv := l.Command(ctx, l.ServerNS, "iperf3", append([]string{"-s", "-1", "-B", l.ServerIP4.String()}, pin...)...)
	if err := srv.Start(); err != nil {
		return tcpResult{}, fmt.Errorf("start iperf3 (apt-get install iperf3): %w", err)
	}
	defer srv.Wait()
	defer srv.Process.Kill()
	if err := waitListening(l, l.ServerNS, 5201, 5*time.Second); err != nil {
		return tcpResult{}, fmt.Errorf("iperf3 server: %w", err)
	}
	secs := strconv.Itoa(int(b.o.TCPTime.Seconds()))
	cpus := [2]int{b.o.GenCPU, b.o.GateCPU}
	c0, c1 := cpuTimes(cpus[0]), cpuTimes(cpus[1])
	out, err := l.Command(ctx, l.ClientNS, "iperf3", append([]string{"-c", l.ServerIP4.String(), "-t", secs, "-P", strconv.Itoa(streams), "-J"}, pin...)...).Output()
	if err != nil {
		return tcpResult{}, fmt.Errorf("iperf3 client: %w", err)
	}
	r, err := parseIperf3(out)
	r.CPUs, r.Busy = cpus, [2]float64{c0.busyUntil(cpuTimes(cpus[0])), c1.busyUntil(cpuTimes(cpus[1]))}
	return r, err
}

// parseIperf3 reads iperf3 -J's client output.
func parseIperf3(out []byte) (tcpResult, error) {
	var r struct {
		End struct {
			Streams []struct {
				Sender struct {
					Retransmits int `json:"retransmits"`
					MaxCwnd     int `json:"max_snd_cwnd"`
					MeanRTT     int `json:"mean_rtt"` // µs
				} `json:"sender"`
			} `json:"streams"`
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return tcpResult{}, fmt.Errorf("parse iperf3 output: %w", err)
	}
	res := tcpResult{Gbps: r.End.SumReceived.BitsPerSecond / 1e9}
	var rtt time.Duration
	for _, s := range r.End.Streams {
		res.Retransmits += s.Sender.Retransmits
		res.MaxCwnd = max(res.MaxCwnd, s.Sender.MaxCwnd)
		rtt += time.Duration(s.Sender.MeanRTT) * time.Microsecond
	}
	if n := len(r.End.Streams); n > 0 {
		res.MeanRTT = rtt / time.Duration(n)
	}
	return res, nil
}

// waitListening waits, until timeout, for a TCP socket listening on port
// in namespace ns (its /proc/net/tcp), without connecting to it: a probe
// connection would be iperf3's one client.
func waitListening(l *lab.Lab, ns string, port uint16, timeout time.Duration) error {
	want := fmt.Sprintf(":%04X 00000000:0000 0A", port) // local port, no peer, LISTEN
	deadline := time.Now().Add(timeout)
	for {
		var listening bool
		err := l.Do(ns, func() error {
			b, err := os.ReadFile("/proc/thread-self/net/tcp")
			listening = strings.Contains(string(b), want)
			return err
		})
		switch {
		case err != nil:
			return err
		case listening:
			return nil
		case time.Now().After(deadline):
			return fmt.Errorf("nothing listens on port %d in %s after %v", port, ns, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// congestionControl is the TCP congestion control iperf3's client gets:
// its namespace's default.
func (b *bencher) congestionControl() string {
	cc := "unknown"
	b.l.Do(b.l.ClientNS, func() error {
		v, err := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
		if err == nil {
			cc = strings.TrimSpace(string(v))
		}
		return err
	})
	return cc
}
