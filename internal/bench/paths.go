package bench

// The paths under test: each variant's device under test (Linux forwarding with
// or without an XDP front end, the kernel's XDP redirect, xskgate with its
// options), its sink, and the client-side extras some variants need.

import (
	"cmp"
	"context"
	"fmt"
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"strconv"
	"strings"

	"github.com/xskgate/xskgate/internal/demo"
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/integrity"
	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/protect"
	"github.com/xskgate/xskgate/internal/xsk"
)

type bencher struct {
	o    Options
	l    *lab.Lab
	pass *ebpf.Program // XDP_PASS, the baseline's front end
	shot *ebpf.Program // TC_ACT_SHOT, the receiver
	drop *ebpf.Program // XDP_DROP, the generator ceiling's sink
	gen  GenKind

	saidRedirectBoth bool // the offload setting of xdp-redirect-both was printed
}

// sink makes the server's eth0 drop everything at tc ingress (a tcx BPF
// program returning TC_ACT_SHOT) and returns the undo. veth counts a frame
// in the server's rx_packets when it hands it over, before the drop. tc,
// not XDP: a veth with an XDP program first copies every skb with little
// headroom into a page-pool page, which AF_XDP's TX skbs are and forwarded
// skbs are not, so an XDP sink would charge one path more than the other.
func (b *bencher) sink(v Variant) (func(), error) {
	var att link.Link
	ns, idx, who := b.l.ServerNS, b.l.ServerIndex, "server"
	if v.External {
		// l2fwd sends the frames back to the client.
		ns, idx, who = b.l.ClientNS, b.l.ClientIndex, "client"
	}
	err := b.l.Do(ns, func() error {
		var err error
		att, err = link.AttachTCX(link.TCXOptions{Interface: idx, Program: b.shot, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("attach the tcx drop sink to the %s's eth0: %w", who, err)
	}
	return func() { att.Close() }, nil
}

// dut is the device under test as set up for one run.
type dut struct {
	ext      int                // the external l2fwd's process id
	g        *gate.Gate         // nil for Linux forwarding and the ceiling
	insp     *protect.Inspector // the TCP protection, when on
	teardown func()
}

// setup puts the gate namespace in the variant's mode and returns its
// teardown.
func (b *bencher) setup(v Variant) (*dut, error) {
	l := b.l
	if v.Ceiling {
		var att link.Link
		var err error
		if v.TCSink {
			err = l.Do(l.GateNS, func() (err error) {
				att, err = link.AttachTCX(link.TCXOptions{Interface: l.OuterIndex, Program: b.shot, Attach: ebpf.AttachTCXIngress})
				return err
			})
		} else {
			att, err = b.attachXDP(l.GateNS, l.OuterIndex, b.drop)
		}
		if err != nil {
			return nil, fmt.Errorf("attach the sink to outer: %w", err)
		}
		return &dut{teardown: func() { att.Close() }}, nil
	}
	if v.Redirect {
		undo, err := b.kernelRedirect(v.Direct)
		if err != nil {
			return nil, err
		}
		return &dut{teardown: undo}, nil
	}
	if v.RedirectBoth {
		undo, err := b.kernelRedirectBoth()
		if err != nil {
			return nil, err
		}
		return &dut{teardown: undo}, nil
	}
	if v.External {
		return b.startExternal()
	}
	if v.Kernel {
		return b.kernelForwarding(v.FrontEnd)
	}
	return b.openGate(v, v.Protection || v.Flood != "" || v.FastPath, v.FirstLine, benchFlows)
}

// kernelForwarding turns IPv4 forwarding on in the gate namespace, with
// RPS handing every packet outer receives to GateCPU, where Linux forwards
// it (route, neighbour, TX to inner, the server's receive), alone. With
// frontEnd, a bare XDP_PASS program on outer runs first, in NAPI on the
// generator's core, as xskgate's program does.
func (b *bencher) kernelForwarding(frontEnd bool) (*dut, error) {
	l := b.l
	if err := l.SetKernelForwarding(true); err != nil {
		return nil, err
	}
	var atts []link.Link
	undo := func() {
		for _, a := range atts {
			a.Close()
		}
		l.SetKernelForwarding(false)
	}
	if frontEnd {
		// On both sides, as xskgate's program is: TCP's ACKs come in on
		// inner.
		for _, idx := range []int{l.OuterIndex, l.InnerIndex} {
			a, err := b.attachXDP(l.GateNS, idx, b.pass)
			if err != nil {
				undo()
				return nil, fmt.Errorf("attach XDP_PASS to the gate's interfaces: %w", err)
			}
			atts = append(atts, a)
		}
	}
	noRPS, err := b.outerRPS()
	if err != nil {
		undo()
		return nil, err
	}
	return &dut{teardown: func() {
		noRPS()
		undo()
	}}, nil
}

// outerRPS makes RPS hand every frame outer's stack receives to GateCPU
// and returns the undo.
func (b *bencher) outerRPS() (func(), error) {
	mask := strconv.FormatUint(1<<b.o.GateCPU, 16)
	if err := b.gateSh("echo " + mask + " > /sys/class/net/outer/queues/rx-0/rps_cpus"); err != nil {
		return nil, err
	}
	return func() { b.gateSh("echo 0 > /sys/class/net/outer/queues/rx-0/rps_cpus") }, nil
}

// benchFlows sizes the protection's flow table and the first line's flow
// map, as the demo does.
const benchFlows = 1 << 16

// openGate opens and starts xskgate in the gate namespace: with the TCP
// protection (demo.DemoProtection) when protection, and its XDP first
// line, fed by the Inspector, when firstLine.
func (b *bencher) openGate(v Variant, protection, firstLine bool, flows int) (*dut, error) {
	l := b.l
	d := &dut{}
	var g *gate.Gate
	err := l.Do(l.GateNS, func() error {
		cfg := engine.Config{CPUs: []int{b.o.GateCPU}, Nice: b.o.DUTNice}
		if protection {
			insp, err := protect.New(demo.DemoProtection(), protect.Options{Logger: b.o.Logger, FlowCapacity: flows})
			if err != nil {
				return err
			}
			cfg.Inspector = insp
			d.insp = insp
		}
		var ic *integrity.Config
		if v.Checks {
			c := integrity.DefaultConfig()
			ic = &c
		}
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: 1, TxBudget: cmp.Or(v.TxBudget, b.o.TxBudget),
			Umem: xsk.UmemConfig{NumFrames: 4096}, Engine: cfg, Integrity: ic, Logger: b.o.Logger, Carrier: v.Carrier,
			FirstLine: protection && firstLine, FirstLineFlows: flows, SoftwareChecksums: v.SoftwareChecksums, FastPath: v.FastPath})
		return err
	})
	if err != nil {
		return nil, err
	}
	stopFP := func() {}
	if v.FastPath {
		fp, why := g.FastPath()
		if fp == nil {
			g.Close()
			return nil, fmt.Errorf("fast path unavailable: %s", why)
		}
		d.insp.SetFastPath(fp)
		noRPS, err := b.outerRPS()
		if err != nil {
			g.Close()
			return nil, err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.insp.RunFastPath(ctx)
		}()
		stopFP = func() { cancel(); <-done; noRPS() }
	}
	stopFL := func() {}
	if protection && firstLine {
		if err := d.insp.SetFirstLine(g.FirstLine(), g.XDPTxErrors); err != nil {
			g.Close()
			return nil, fmt.Errorf("feed the first line: %w", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			d.insp.RunFirstLine(ctx)
		}()
		stopFL = func() { cancel(); <-done }
	}
	g.Start()
	d.g = g
	d.teardown = func() {
		stopFL()
		stopFP() // its sweeper uses the fast path g.Close releases
		g.Close()
	}
	return d, nil
}

func (b *bencher) gateSh(script string) error {
	out, err := b.l.Command(context.Background(), b.l.GateNS, "sh", "-c", script).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", script, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// attachXDP attaches prog in native mode (veth has it) to interface
// ifindex of namespace ns, where the kernel resolves the index, and
// returns the link, whose Close detaches it.
func (b *bencher) attachXDP(ns string, ifindex int, prog *ebpf.Program) (link.Link, error) {
	var att link.Link
	err := b.l.Do(ns, func() (err error) {
		att, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
		return err
	})
	return att, err
}

// clientXDPPass attaches the XDP_PASS program to the client's eth0 (it
// gives that veth NAPI and passes every frame to its stack) and returns
// the undo.
func (b *bencher) clientXDPPass() (func(), error) {
	att, err := b.attachXDP(b.l.ClientNS, b.l.ClientIndex, b.pass)
	if err != nil {
		return nil, fmt.Errorf("attach XDP_PASS to the client's eth0: %w", err)
	}
	return func() { att.Close() }, nil
}

// clientExtras applies the variant's settings of the client's eth0 and
// returns their undo.
func (b *bencher) clientExtras(v Variant) (func(), error) {
	l := b.l
	var undo []func()
	all := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	if v.ClientXDP {
		att, err := b.attachXDP(l.ClientNS, l.ClientIndex, b.drop)
		if err != nil {
			return nil, fmt.Errorf("attach XDP_DROP to the client's eth0: %w", err)
		}
		undo = append(undo, func() { att.Close() })
	}
	if v.ClientGRO {
		if out, err := l.Command(context.Background(), l.ClientNS, "ethtool", "-K", lab.HostIfName, "gro", "on").CombinedOutput(); err != nil {
			all()
			return nil, fmt.Errorf("turn GRO on at the client's eth0 (ethtool): %w: %s", err, strings.TrimSpace(string(out)))
		}
		undo = append(undo, func() {
			l.Command(context.Background(), l.ClientNS, "ethtool", "-K", lab.HostIfName, "gro", "off").Run()
		})
	}
	return all, nil
}
