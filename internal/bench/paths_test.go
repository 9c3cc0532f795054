package bench

import (
	"io"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"github.com/xskgate/xskgate/internal/lab"
)

// TestKernelRedirectAttaches: the kernel-redirect ceiling attaches its
// programs through attachXDP, in the namespaces of the interfaces they
// are for (XDP_PASS on the server's eth0, the redirect on the gate's
// outer), and its undo detaches them again, direct or through a cpumap.
func TestKernelRedirectAttaches(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 1})
	pass := returnProgram(t, "xskgate_pass", 2 /* XDP_PASS */)
	b := &bencher{l: l, pass: pass}
	attached := func(ns string, idx int) bool { return xdpAttached(t, l, ns, idx) }
	for _, direct := range []bool{true, false} {
		undo, err := b.kernelRedirect(direct)
		if err != nil {
			t.Fatalf("direct %v: %v", direct, err)
		}
		srv, outer := attached(l.ServerNS, l.ServerIndex), attached(l.GateNS, l.OuterIndex)
		undo()
		if !srv || !outer {
			t.Fatalf("direct %v: XDP on the server's eth0 %v, on outer %v; want both", direct, srv, outer)
		}
		if attached(l.ServerNS, l.ServerIndex) || attached(l.GateNS, l.OuterIndex) {
			t.Fatalf("direct %v: a program stays attached after the undo", direct)
		}
	}
}

// TestKernelRedirectBoth: the TCP ceiling attaches a redirect on both gate
// interfaces and XDP_PASS on both endpoints, turns the endpoints' TX
// checksum offload off while it runs, and its undo puts everything back.
func TestKernelRedirectBoth(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 1})
	pass := returnProgram(t, "xskgate_pass", 2 /* XDP_PASS */)
	b := &bencher{l: l, pass: pass, o: Options{Out: io.Discard}}
	state := func() (xdp [4]bool, txCsum [2]bool) {
		t.Helper()
		for i, at := range []struct {
			ns  string
			idx int
		}{{l.ClientNS, l.ClientIndex}, {l.ServerNS, l.ServerIndex}, {l.GateNS, l.OuterIndex}, {l.GateNS, l.InnerIndex}} {
			xdp[i] = xdpAttached(t, l, at.ns, at.idx)
		}
		for i, ns := range []string{l.ClientNS, l.ServerNS} {
			out, err := l.Command(t.Context(), ns, "ethtool", "-k", lab.HostIfName).CombinedOutput()
			if err != nil {
				t.Fatalf("ethtool -k: %v: %s", err, out)
			}
			txCsum[i] = strings.Contains(string(out), "tx-checksumming: on")
		}
		return xdp, txCsum
	}
	undo, err := b.kernelRedirectBoth()
	if err != nil {
		t.Fatal(err)
	}
	xdp, txCsum := state()
	undo()
	if xdp != [4]bool{true, true, true, true} || txCsum != [2]bool{false, false} {
		t.Fatalf("while set up: XDP on client, server, outer, inner %v, TX checksum offload on client, server %v", xdp, txCsum)
	}
	if xdp, txCsum = state(); xdp != [4]bool{} || txCsum != [2]bool{true, true} {
		t.Fatalf("after the undo: XDP %v, TX checksum offload %v", xdp, txCsum)
	}
}

// xdpAttached says whether interface idx of namespace ns has an XDP
// program attached.
func xdpAttached(t *testing.T, l *lab.Lab, ns string, idx int) bool {
	t.Helper()
	var on bool
	if err := l.Do(ns, func() error {
		lk, err := netlink.LinkByIndex(idx)
		if err == nil {
			on = lk.Attrs().Xdp != nil && lk.Attrs().Xdp.Attached
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return on
}

// returnProgram loads an XDP program that returns action, closed when the
// test ends.
func returnProgram(t *testing.T, name string, action int32) *ebpf.Program {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, action), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}
