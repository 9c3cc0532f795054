package xdpprog

import (
	"errors"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// xdpState reads the XDP attachment of ifindex from netlink, as
// `ip -d link` would show it.
func xdpState(t *testing.T, ifindex int) (progID uint32, attachMode uint32) {
	t.Helper()
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		t.Fatalf("look up ifindex %d: %v", ifindex, err)
	}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return 0, 0
	}
	return x.ProgId, x.AttachMode
}

func progID(t *testing.T, p *Program) uint32 {
	t.Helper()
	info, err := p.Raw().Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("program info has no ID")
	}
	return uint32(id)
}

func TestAttachDetach(t *testing.T) {
	tests := []struct {
		mode       Mode
		attachMode uint32 // IFLA_XDP_ATTACHED
	}{
		{ModeNative, nl.XDP_ATTACHED_DRV},
		{ModeGeneric, nl.XDP_ATTACHED_SKB},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String(), func(t *testing.T) {
			enterNetns(t)
			a, _ := newVeth(t, vethConfig{rx: 2, tx: 2, peerRx: 2, peerTx: 2})
			p := loadProgram(t, 2)
			idx := a.Attrs().Index

			att, err := p.Attach(idx, tt.mode)
			if err != nil {
				t.Fatalf("Attach: %v", err)
			}
			t.Cleanup(func() { att.Close() })
			if att.Ifindex() != idx || att.Mode() != tt.mode {
				t.Errorf("attachment reports ifindex %d mode %v", att.Ifindex(), att.Mode())
			}
			id, mode := xdpState(t, idx)
			if want := progID(t, p); id != want || mode != tt.attachMode {
				t.Fatalf("netlink shows prog %d mode %d, want prog %d mode %d", id, mode, want, tt.attachMode)
			}

			if err := att.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if id, _ := xdpState(t, idx); id != 0 {
				t.Fatalf("prog %d still attached after Close", id)
			}
			if err := att.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}

			// The interface is free again: a fresh attach must work.
			att2, err := p.Attach(idx, tt.mode)
			if err != nil {
				t.Fatalf("re-Attach after Close: %v", err)
			}
			att2.Close()
		})
	}
}

func TestAttachErrors(t *testing.T) {
	tests := []struct {
		name  string
		veth  vethConfig
		setup func(t *testing.T, p *Program, idx int) // optional prior state
		mode  Mode
		// ifindex overrides the veth's when nonzero.
		ifindex int
		errno   unix.Errno
		want    []string // substrings of the error text
	}{
		{
			name:    "nonexistent ifindex",
			veth:    vethConfig{rx: 1, tx: 1, peerRx: 1, peerTx: 1},
			mode:    ModeNative,
			ifindex: 0x7ffff0,
			want:    []string{"ifindex 8388592", "native mode", "no such interface"},
		},
		{
			name:  "fewer rx queues than peer tx queues",
			veth:  vethConfig{rx: 1, tx: 1, peerRx: 2, peerTx: 2},
			mode:  ModeNative,
			errno: unix.ENOSPC,
			want:  []string{"native mode", "has 1 rx queue(s)", "has 2 tx queue(s)", "ENOSPC", "same queue count"},
		},
		{
			name:  "peer MTU too large",
			veth:  vethConfig{rx: 1, tx: 1, peerRx: 1, peerTx: 1, peerMTU: 9000},
			mode:  ModeNative,
			errno: unix.ERANGE,
			want:  []string{"peer MTU", "ERANGE", "lower the peer's MTU"},
		},
		{
			name: "already attached",
			veth: vethConfig{rx: 1, tx: 1, peerRx: 1, peerTx: 1},
			setup: func(t *testing.T, p *Program, idx int) {
				att, err := p.Attach(idx, ModeNative)
				if err != nil {
					t.Fatalf("first Attach: %v", err)
				}
				t.Cleanup(func() { att.Close() })
			},
			mode:  ModeNative,
			errno: unix.EBUSY,
			want:  []string{"already has an XDP program", "EBUSY"},
		},
		{
			name: "other mode already attached",
			veth: vethConfig{rx: 1, tx: 1, peerRx: 1, peerTx: 1},
			setup: func(t *testing.T, p *Program, idx int) {
				att, err := p.Attach(idx, ModeNative)
				if err != nil {
					t.Fatalf("first Attach: %v", err)
				}
				t.Cleanup(func() { att.Close() })
			},
			mode:  ModeGeneric,
			errno: unix.EEXIST,
			want:  []string{"generic mode", "already has an XDP program", "EEXIST"},
		},
		{
			name: "unknown mode",
			veth: vethConfig{rx: 1, tx: 1, peerRx: 1, peerTx: 1},
			mode: Mode(7),
			want: []string{"unknown xdp mode 7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enterNetns(t)
			a, _ := newVeth(t, tt.veth)
			p := loadProgram(t, 2)
			idx := a.Attrs().Index
			if tt.setup != nil {
				tt.setup(t, p, idx)
			}
			if tt.ifindex != 0 {
				idx = tt.ifindex
			}
			att, err := p.Attach(idx, tt.mode)
			if err == nil {
				att.Close()
				t.Fatal("Attach succeeded")
			}
			t.Log(err)
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
			if tt.errno != 0 && !errors.Is(err, tt.errno) {
				t.Errorf("error is not %v", tt.errno)
			}
		})
	}
}
