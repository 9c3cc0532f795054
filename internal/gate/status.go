package gate

import (
	"fmt"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

// Status is how the gate is set up, as the kernel reports it, for
// `xskgate status` (in the spirit of xdp-loader status): per interface the
// XDP program and how it is attached, per socket the bind mode the kernel
// granted.
type Status struct {
	Carrier    string `json:"carrier"`
	CarrierWhy string `json:"carrier_why"`
	// Checksums says who completes partial checksums (the neighbours'
	// TX checksum offload): "kernel at TX" (AF_XDP TX metadata) or
	// "software", and why.
	Checksums    string `json:"partial_checksums"`
	ChecksumsWhy string `json:"partial_checksums_why"`
	// FastPath is "on", "off" (asked for, unavailable: FastPathWhy) or
	// "not asked".
	FastPath      string        `json:"fast_path"`
	FastPathWhy   string        `json:"fast_path_why,omitempty"`
	FastPathFlows int           `json:"fast_path_capacity,omitempty"`
	Frames        uint32        `json:"umem_frames"`
	FrameSize     uint32        `json:"umem_frame_size"`
	Headroom      uint32        `json:"umem_headroom"`
	Interfaces    []IfaceStatus `json:"interfaces"`
}

// IfaceStatus is one interface's XDP program and sockets.
type IfaceStatus struct {
	Side    string `json:"side"`
	Iface   string `json:"iface"`
	Ifindex int    `json:"ifindex"`
	// Program is xskgate's: its name, id and bpf_link id, and the mode it
	// was attached in (native: XDP_FLAGS_DRV_MODE, generic: SKB mode).
	Program    string `json:"xdp_program"`
	ProgramID  uint32 `json:"xdp_program_id"`
	LinkID     uint32 `json:"bpf_link_id"`
	AttachMode string `json:"attach_mode"`
	FirstLine  bool   `json:"first_line"`
	// Kernel is what rtnetlink says is attached (IFLA_XDP): the program
	// id and mode; "" when it could not be read. A KernelProgramID other
	// than ProgramID means someone replaced the program.
	KernelMode      string         `json:"kernel_attach_mode"`
	KernelProgramID uint32         `json:"kernel_xdp_program_id"`
	Err             string         `json:"error,omitempty"`
	Sockets         []SocketStatus `json:"sockets"`
}

// SocketStatus is one AF_XDP socket as bound.
type SocketStatus struct {
	Queue int `json:"queue"`
	// BindMode is what the kernel granted (XDP_OPTIONS): "zero-copy" or
	// "copy"; Asked is the configured mode (auto lets the kernel choose).
	BindMode string `json:"bind_mode"`
	Asked    string `json:"bind_mode_asked"`
	// NeedWakeup: the UMEM uses XDP_USE_NEED_WAKEUP, as sock_diag
	// (XDP_DIAG_UMEM) reports it (sockets on a shared UMEM inherit the
	// first one's flags); Diag says whether the kernel answered, else
	// NeedWakeup is the configured value.
	NeedWakeup bool   `json:"need_wakeup"`
	Diag       bool   `json:"sock_diag"`
	SharedUmem bool   `json:"shared_umem"`
	Fill       uint32 `json:"fill_size"`
	Comp       uint32 `json:"completion_size"`
	RX         uint32 `json:"rx_size"`
	TX         uint32 `json:"tx_size"`
	TxBatch    uint32 `json:"tx_batch"` // descriptors one sendto moves (XDP_MAX_TX_SKB_BUDGET or 32)
	Err        string `json:"error,omitempty"`
}

// Status reads the gate's setup. Safe while the gate runs.
func (g *Gate) Status() Status {
	uc := g.Umem.Config()
	st := Status{Carrier: g.carrier.String(), CarrierWhy: g.carrierWhy,
		Frames: uc.NumFrames, FrameSize: uc.FrameSize, Headroom: uc.Headroom}
	st.Checksums, st.ChecksumsWhy = g.checksumMode()
	switch {
	case g.fast != nil:
		st.FastPath, st.FastPathFlows = "on", g.fast.Capacity()
	case g.cfg.FastPath:
		st.FastPath, st.FastPathWhy = "off", g.fastWhy
	default:
		st.FastPath = "not asked"
	}
	var h *netlink.Handle
	if g.links != nil {
		// A handle of its own: the link watch's is used by its loop.
		h, _ = netlink.NewHandleAt(g.links.ns, unix.NETLINK_ROUTE)
	}
	if h != nil {
		defer h.Close()
	}
	// sock_diag, as ss --xdp: the UMEM's flags per socket, by inode. A
	// kernel without CONFIG_XDP_SOCKETS_DIAG answers nothing; the
	// configured values stand then.
	diag := map[uint32]*netlink.XDPDiagUmem{}
	if xs, err := netlink.SocketDiagXDP(); err == nil {
		for _, x := range xs {
			if x.XDPDiagMsg != nil && x.XDPInfo != nil && x.XDPInfo.Umem != nil {
				diag[x.XDPDiagMsg.Ino] = x.XDPInfo.Umem
			}
		}
	}
	for i, socks := range [][]*xsk.Socket{g.Outer, g.Inner} {
		is := IfaceStatus{Side: engine.Side(i).String(), Iface: [2]string{g.cfg.Outer, g.cfg.Inner}[i],
			AttachMode: g.cfg.XDPMode.String()}
		if i < len(g.atts) {
			a := g.atts[i]
			is.Ifindex = a.Ifindex()
			if l, p, err := a.IDs(); err == nil {
				is.LinkID, is.ProgramID = l, p
			} else {
				is.Err = err.Error()
			}
		}
		if i < len(g.progs) {
			is.Program = g.progs[i].Name()
			is.FirstLine = g.progs[i].FirstLine() != nil
		}
		if h != nil && is.Ifindex > 0 {
			if l, err := h.LinkByIndex(is.Ifindex); err == nil && l.Attrs().Xdp != nil && l.Attrs().Xdp.Attached {
				is.KernelProgramID = l.Attrs().Xdp.ProgId
				is.KernelMode = xdpAttachMode(l.Attrs().Xdp.AttachMode)
			} else if err != nil {
				is.Err = fmt.Sprintf("rtnetlink: %v", err)
			}
		}
		for _, s := range socks {
			ss := SocketStatus{Queue: s.Queue(), Asked: uc.Mode.String(), NeedWakeup: !uc.NoNeedWakeup,
				SharedUmem: s != g.Outer[0], TxBatch: s.TxBatch(), Fill: uc.FillSize, Comp: uc.CompSize}
			if _, _, rx, tx := s.Rings(); rx != nil || tx != nil {
				if rx != nil {
					ss.RX = rx.Size()
				}
				if tx != nil {
					ss.TX = tx.Size()
				}
			}
			var stat unix.Stat_t
			if unix.Fstat(s.FD(), &stat) == nil {
				if u := diag[uint32(stat.Ino)]; u != nil {
					ss.Diag, ss.NeedWakeup = true, u.Flags&xdpDuFNeedWakeup != 0
				}
			}
			// Read again, not bindModes: status says what the kernel
			// reports now.
			var err error
			if ss.BindMode, err = bindModeOf(s); err != nil {
				ss.Err = err.Error()
			}
			is.Sockets = append(is.Sockets, ss)
		}
		st.Interfaces = append(st.Interfaces, is)
	}
	return st
}

// xdpAttachMode names IFLA_XDP_ATTACHED's value.
func xdpAttachMode(m uint32) string {
	switch m {
	case 1:
		return "native" // XDP_ATTACHED_DRV
	case 2:
		return "generic" // XDP_ATTACHED_SKB
	case 3:
		return "offload" // XDP_ATTACHED_HW
	case 4:
		return "multi" // XDP_ATTACHED_MULTI
	}
	return fmt.Sprintf("mode %d", m)
}

// xdpDuFNeedWakeup is XDP_DU_F_NEED_WAKEUP in xdp_diag_umem.flags
// (include/uapi/linux/xdp_diag.h).
const xdpDuFNeedWakeup = 1 << 1
