package xdpprog

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Attachment is the program attached to one interface through a bpf_link.
// The kernel detaches it when Close is called or the process exits.
type Attachment struct {
	ifindex int
	mode    Mode

	mu   sync.Mutex
	link link.Link
}

// Attach attaches the program to the interface ifindex, resolved in the
// network namespace of the calling OS thread, in the given mode. It fails
// if the interface already has an XDP program in any mode: xskgate never
// silently replaces someone else's program.
func (p *Program) Attach(ifindex int, mode Mode) (*Attachment, error) {
	flags, err := mode.flags()
	if err != nil {
		return nil, fmt.Errorf("attach xdp to ifindex %d: %w", ifindex, err)
	}
	if ifindex < 1 {
		return nil, fmt.Errorf("attach xdp to ifindex %d in %s mode: invalid ifindex", ifindex, mode)
	}
	if p.prog == nil {
		return nil, fmt.Errorf("attach xdp to ifindex %d in %s mode: program is closed", ifindex, mode)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: p.prog, Interface: ifindex, Flags: flags})
	if err != nil {
		return nil, attachError(ifindex, mode, err)
	}
	return &Attachment{ifindex: ifindex, mode: mode, link: l}, nil
}

// Ifindex returns the interface the program is attached to.
func (a *Attachment) Ifindex() int { return a.ifindex }

// Mode returns the mode the program was attached in.
func (a *Attachment) Mode() Mode { return a.mode }

// Close detaches the program. It is idempotent and safe for concurrent use.
func (a *Attachment) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link == nil {
		return nil
	}
	err := a.link.Close()
	a.link = nil
	if err != nil {
		return fmt.Errorf("detach xdp from ifindex %d: %w", a.ifindex, err)
	}
	return nil
}

// attachError turns the errnos the XDP attach path returns into one line
// that names the interface, the mode, the cause and the fix. The kernel's
// extack text is not available through BPF_LINK_CREATE, so the cause is
// reconstructed from the errno and, where it helps, from netlink.
func attachError(ifindex int, mode Mode, err error) error {
	name, dev := fmt.Sprintf("ifindex %d", ifindex), "<interface>"
	var attrs *netlink.LinkAttrs
	var lnk netlink.Link
	if l, lerr := netlink.LinkByIndex(ifindex); lerr == nil {
		lnk, attrs = l, l.Attrs()
		name, dev = fmt.Sprintf("ifindex %d (%s)", ifindex, attrs.Name), attrs.Name
	}
	e := errnoName(err)
	var why string
	switch {
	case isPerm(err):
		why = fmt.Sprintf("permission denied (%s): %s", e, privHint)
	case errors.Is(err, unix.ENODEV) || (attrs == nil && errors.Is(err, unix.EINVAL)):
		why = fmt.Sprintf("no such interface in this network namespace (%s): check the ifindex and the namespace of the calling thread", e)
	case errors.Is(err, unix.ENOSPC):
		why = queueMismatch(lnk, e)
	case errors.Is(err, unix.ENOTCONN):
		why = fmt.Sprintf("veth peer is missing (%s): create the pair and keep both ends", e)
	case errors.Is(err, unix.ERANGE):
		why = fmt.Sprintf("veth peer MTU is too large for XDP (%s): lower the peer's MTU (at most about 3.5 KiB on 4 KiB pages)", e)
	case errors.Is(err, unix.EOPNOTSUPP), errors.Is(err, errENOTSUPP):
		why = fmt.Sprintf("driver does not support %s XDP (%s): use generic mode", mode, e)
	case errors.Is(err, unix.EBUSY), errors.Is(err, unix.EEXIST):
		why = fmt.Sprintf("interface already has an XDP program, possibly in the other mode (%s): detach it first (ip link set dev %s xdp off, or close its link)", e, dev)
	case errors.Is(err, unix.EINVAL):
		why = fmt.Sprintf("kernel rejected the attachment (%s): the MTU may be too large for %s XDP without multi-buffer support", e, mode)
	default:
		return fmt.Errorf("attach xdp to %s in %s mode: %w", name, mode, err)
	}
	return &hintError{msg: fmt.Sprintf("attach xdp to %s in %s mode: %s", name, mode, why), err: err}
}

// queueMismatch explains veth's ENOSPC: native XDP needs the interface's
// real rx queue count to be at least its peer's real tx queue count, so
// that every peer tx queue maps onto an rx queue with an XDP context.
func queueMismatch(l netlink.Link, e string) string {
	const fix = ": give both ends the same queue count"
	if l == nil {
		return "fewer rx queues than its veth peer has tx queues (" + e + ")" + fix
	}
	a := l.Attrs()
	peer := "its veth peer"
	peerTx := -1
	// IFLA_LINK is the peer's ifindex; IFLA_LINK_NETNSID is set (not -1)
	// only when the peer lives in another namespace, where looking the
	// index up here would find an unrelated interface.
	if _, ok := l.(*netlink.Veth); ok && a.ParentIndex > 0 && a.NetNsID == -1 {
		if pl, err := netlink.LinkByIndex(a.ParentIndex); err == nil {
			peer = "its veth peer " + pl.Attrs().Name
			peerTx = pl.Attrs().NumTxQueues
		}
	}
	if peerTx < 0 {
		return fmt.Sprintf("interface has %d rx queue(s), fewer than %s has tx queues (%s)%s", a.NumRxQueues, peer, e, fix)
	}
	return fmt.Sprintf("interface has %d rx queue(s) but %s has %d tx queue(s) (%s)%s", a.NumRxQueues, peer, peerTx, e, fix)
}
