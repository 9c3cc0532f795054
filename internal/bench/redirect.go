package bench

import (
	"context"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"

	"github.com/xskgate/xskgate/internal/lab"
)

// The kernel's own XDP forwarding, the ceiling of the AF_XDP paths on the
// same cores: outer's XDP program (in NAPI on the generator's core, like
// xskgate's) redirects every frame into a cpumap entry for GateCPU; the
// cpumap's kthread there runs a second program that redirects the frame,
// still an xdp_frame (no skb, no copy), through a devmap to inner. veth's
// ndo_xdp_xmit needs NAPI on the receiving end, so the server's eth0 gets
// an XDP_PASS program for the run. Programs are built from instructions,
// as the bench's sinks are: five instructions need no object file.

// redirectProg returns r0 = bpf_redirect_map(m, key, 0).
func redirectProg(name string, m *ebpf.Map, key int32, attach ebpf.AttachType) (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.XDP, AttachType: attach, License: "GPL",
		Instructions: asm.Instructions{
			asm.LoadMapPtr(asm.R1, m.FD()),
			asm.Mov.Imm(asm.R2, key),
			asm.Mov.Imm(asm.R3, 0),
			asm.FnRedirectMap.Call(),
			asm.Return(),
		}})
}

// kernelRedirect sets the ceiling up and returns its teardown; direct
// redirects from outer straight into the devmap, no cpumap: everything
// runs in outer's NAPI on the generator's core.
func (b *bencher) kernelRedirect(direct bool) (func(), error) {
	l := b.l
	var closers undoStack
	fail := func(err error) (func(), error) {
		closers.run()
		return nil, err
	}
	dev, err := b.gateDevmap(l.InnerIndex)
	if err != nil {
		return fail(err)
	}
	closers.push(dev.Close)
	// The program on outer: straight to the devmap (direct: all of it in
	// outer's NAPI on the generator's core), or to a cpumap entry for the
	// DUT core, whose program then redirects through the devmap.
	var toOuter *ebpf.Program
	if direct {
		if toOuter, err = redirectProg("bench_to_inner", dev, 0, ebpf.AttachNone); err != nil {
			return fail(fmt.Errorf("load the devmap redirect program: %w", err))
		}
		closers.push(toOuter.Close)
	} else {
		toInner, err := redirectProg("bench_to_inner", dev, 0, ebpf.AttachXDPCPUMap)
		if err != nil {
			return fail(fmt.Errorf("load the cpumap program: %w", err))
		}
		closers.push(toInner.Close)
		cpus, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_cpumap", Type: ebpf.CPUMap, KeySize: 4, ValueSize: 8, MaxEntries: uint32(b.o.GateCPU + 1)})
		if err != nil {
			return fail(fmt.Errorf("cpumap: %w", err))
		}
		closers.push(cpus.Close)
		// struct bpf_cpumap_val: qsize, then the program's fd.
		if err := cpus.Put(uint32(b.o.GateCPU), [2]uint32{2048, uint32(toInner.FD())}); err != nil {
			return fail(fmt.Errorf("cpumap entry for CPU %d: %w", b.o.GateCPU, err))
		}
		if toOuter, err = redirectProg("bench_to_cpu", cpus, int32(b.o.GateCPU), ebpf.AttachNone); err != nil {
			return fail(fmt.Errorf("load the redirect program: %w", err))
		}
		closers.push(toOuter.Close)
	}
	srv, err := b.attachXDP(l.ServerNS, l.ServerIndex, b.pass)
	if err != nil {
		return fail(fmt.Errorf("attach XDP_PASS to the server's eth0 (veth receives redirected frames only with NAPI): %w", err))
	}
	closers.push(srv.Close)
	outer, err := b.attachXDP(l.GateNS, l.OuterIndex, toOuter)
	if err != nil {
		return fail(fmt.Errorf("attach the redirect program to %s: %w", lab.OuterName, err))
	}
	closers.push(outer.Close)
	return closers.run, nil
}

// kernelRedirectBoth sets up the kernel's XDP forwarding both ways, the
// TCP ceiling: outer's program redirects through a devmap to inner, and
// inner's to outer, in NAPI on whichever core receives (no cpumap, no
// skb at the gate); the client's and the server's eth0 get an XDP_PASS
// for veth's NAPI. A redirected xdp_frame loses CHECKSUM_PARTIAL, so
// TCP from neighbours with TX checksum offload (the lab's default) is
// dropped at the receiver for a bad checksum: for this path alone the
// bench turns the endpoints' TX checksum offload off (and says so), which
// the product does not need.
func (b *bencher) kernelRedirectBoth() (func(), error) {
	l := b.l
	var closers undoStack
	fail := func(err error) (func(), error) {
		closers.run()
		return nil, err
	}
	dev, err := b.gateDevmap(l.InnerIndex, l.OuterIndex)
	if err != nil {
		return fail(err)
	}
	closers.push(dev.Close)
	for _, ns := range []string{l.ClientNS, l.ServerNS} {
		if out, err := l.Command(context.Background(), ns, "ethtool", "-K", lab.HostIfName, "tx", "off").CombinedOutput(); err != nil {
			return fail(fmt.Errorf("turn TX checksum offload off on %s's %s: %v: %s", ns, lab.HostIfName, err, out))
		}
		closers.push(func() error {
			return l.Command(context.Background(), ns, "ethtool", "-K", lab.HostIfName, "tx", "on").Run()
		})
	}
	for _, a := range []struct {
		ns    string
		idx   int
		key   int32 // devmap entry, or -1 for XDP_PASS
		where string
	}{{l.ClientNS, l.ClientIndex, -1, "the client's eth0"}, {l.ServerNS, l.ServerIndex, -1, "the server's eth0"},
		{l.GateNS, l.OuterIndex, 0, lab.OuterName}, {l.GateNS, l.InnerIndex, 1, lab.InnerName}} {
		p := b.pass
		if a.key >= 0 {
			if p, err = redirectProg("bench_redirect", dev, a.key, ebpf.AttachNone); err != nil {
				return fail(fmt.Errorf("load the devmap redirect program: %w", err))
			}
			closers.push(p.Close)
		}
		att, err := b.attachXDP(a.ns, a.idx, p)
		if err != nil {
			return fail(fmt.Errorf("attach XDP to %s: %w", a.where, err))
		}
		closers.push(att.Close)
	}
	if !b.saidRedirectBoth {
		b.saidRedirectBoth = true
		fmt.Fprintf(b.o.Out, "bench: xdp-redirect-both turns the client's and the server's TX checksum offload off while it runs (redirected frames lose CHECKSUM_PARTIAL)\n")
	}
	return closers.run, nil
}

// undoStack is what a setup must undo, run last first.
type undoStack []func() error

func (u *undoStack) push(f func() error) { *u = append(*u, f) }

func (u *undoStack) run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
}

// gateDevmap makes a devmap whose entry i is the gate interface
// ifindexes[i]. The kernel resolves an ifindex in the caller's namespace,
// so the entries are written from the gate's.
func (b *bencher) gateDevmap(ifindexes ...int) (*ebpf.Map, error) {
	dev, err := ebpf.NewMap(&ebpf.MapSpec{Name: "bench_devmap", Type: ebpf.DevMap, KeySize: 4, ValueSize: 4, MaxEntries: uint32(len(ifindexes))})
	if err != nil {
		return nil, fmt.Errorf("devmap: %w", err)
	}
	err = b.l.Do(b.l.GateNS, func() error {
		var errs []error
		for i, idx := range ifindexes {
			errs = append(errs, dev.Put(uint32(i), uint32(idx)))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("devmap entries for the gate's interfaces: %w", err)
	}
	return dev, nil
}
