package gate_test

import (
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/gate"
	"github.com/xskgate/xskgate/internal/lab"
)

// TestCloseLeavesNothing: a gate with the first line loaded leaves no XDP
// program attached to either interface, and no program or map of its own
// in the kernel, once closed. The IDs are the gate's own (other gates may
// run on the machine meanwhile).
func TestCloseLeavesNothing(t *testing.T) {
	l := lab.ForTest(t, lab.Config{Queues: 2, StaticNeighbors: true})
	var g *gate.Gate
	if err := l.Do(l.GateNS, func() error {
		var err error
		g, err = gate.Open(gate.Config{Outer: lab.OuterName, Inner: lab.InnerName, Queues: 2,
			Engine: engine.Config{}, FirstLine: true, FirstLineFlows: 1 << 12})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	g.Start()
	if g.FirstLine() == nil {
		g.Close()
		t.Fatal("no first line")
	}
	var progs []ebpf.ProgramID
	var maps []ebpf.MapID
	for _, p := range g.Programs() {
		info, err := p.Raw().Info()
		if err != nil {
			g.Close()
			t.Fatal(err)
		}
		id, _ := info.ID()
		progs = append(progs, id)
		ids, _ := info.MapIDs()
		maps = append(maps, ids...)
	}
	if len(progs) != 2 || len(maps) < 10 {
		g.Close()
		t.Fatalf("gate has programs %v and maps %v: want 2 programs, the first line's maps", progs, maps)
	}
	attached := func() (n int) {
		l.Do(l.GateNS, func() error {
			for _, name := range []string{lab.OuterName, lab.InnerName} {
				if ln, err := netlink.LinkByName(name); err == nil && ln.Attrs().Xdp != nil && ln.Attrs().Xdp.Attached {
					n++
				}
			}
			return nil
		})
		return n
	}
	if n := attached(); n != 2 {
		g.Close()
		t.Fatalf("%d interfaces with an XDP program while the gate runs, want 2", n)
	}
	if err := g.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if n := attached(); n != 0 {
		t.Errorf("%d interfaces still have an XDP program after close", n)
	}
	// The kernel frees a program after an RCU grace period, and the maps
	// it held after that (deferred work): wait for them, within a bound.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var left []string
		for _, id := range progs {
			if p, err := ebpf.NewProgramFromID(id); !errors.Is(err, os.ErrNotExist) {
				if p != nil {
					p.Close()
				}
				left = append(left, fmt.Sprintf("program %d (%v)", id, err))
			}
		}
		for _, id := range maps {
			if m, err := ebpf.NewMapFromID(id); !errors.Is(err, os.ErrNotExist) {
				name := ""
				if m != nil {
					if info, e := m.Info(); e == nil {
						name = info.Name
					}
					m.Close()
				}
				left = append(left, fmt.Sprintf("map %d %s (%v)", id, name, err))
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still in the kernel 10s after close: %v", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
