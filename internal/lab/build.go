package lab

// Building a lab step by step (namespaces, veth pairs, addresses, neighbours,
// IPv6 readiness), undoing what was made when a step fails, and
// discovering an existing one.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// builder holds the state of one Up so that a failure can undo it.
type builder struct {
	cfg     Config
	ctx     context.Context
	created []string // namespaces this Up created, to remove on failure
	owned   bool     // this Up wrote the lab's owner record
	handles []netns.NsHandle
	nl      []*netlink.Handle
}

func (b *builder) step(name string) error {
	if err := b.ctx.Err(); err != nil {
		return fmt.Errorf("lab: up interrupted before %s: %w", name, err)
	}
	return nil
}

func (b *builder) done(name string) error {
	if b.cfg.afterStep != nil {
		return b.cfg.afterStep(name)
	}
	return nil
}

func (b *builder) close() {
	for _, h := range b.nl {
		h.Close()
	}
	b.nl = nil
	for _, h := range b.handles {
		h.Close()
	}
	b.handles = nil
}

func (b *builder) cleanup() error {
	b.close()
	var errs []error
	// Reverse order; deleting the gate first takes both veth pairs with it.
	for i := len(b.created) - 1; i >= 0; i-- {
		if err := deleteNamedNS(b.created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	b.created = nil
	if b.owned && len(errs) == 0 {
		errs = append(errs, removeOwner(b.cfg.Prefix))
	}
	return errors.Join(errs...)
}

func (b *builder) build() (*Lab, error) {
	defer b.close()
	cfg := b.cfg
	l := &Lab{
		Prefix:          cfg.Prefix,
		Queues:          cfg.Queues,
		MTU:             cfg.MTU,
		StaticNeighbors: cfg.StaticNeighbors,
		ClientIP4:       ClientIP4, ServerIP4: ServerIP4, ClientIP6: ClientIP6, ServerIP6: ServerIP6,
	}
	l.ClientNS, l.GateNS, l.ServerNS = NSNames(cfg.Prefix)
	names := []string{l.ClientNS, l.GateNS, l.ServerNS}

	// 1. Namespaces.
	if err := b.step("namespaces"); err != nil {
		return nil, err
	}
	for _, n := range names {
		if nsExists(n) {
			return nil, existsError(cfg.Prefix)
		}
	}
	if err := ensureNetnsDir(); err != nil {
		return nil, err
	}
	var ns [3]netns.NsHandle
	for i, n := range names {
		h, err := createNamedNS(n)
		if err != nil {
			if errors.Is(err, ErrExists) {
				return nil, existsError(cfg.Prefix)
			}
			return nil, err
		}
		b.created = append(b.created, n)
		b.handles = append(b.handles, h)
		ns[i] = h
	}
	var nlh [3]*netlink.Handle
	for i, n := range names {
		h, err := newHandleIn(ns[i], n)
		if err != nil {
			return nil, mapPerm("opening netlink in "+n, err)
		}
		b.nl = append(b.nl, h)
		nlh[i] = h
	}
	client, gate, server := nlh[0], nlh[1], nlh[2]
	if err := b.done("namespaces"); err != nil {
		return nil, err
	}

	// 2. Veth pairs, made in the gate ns with the peer put straight into
	// the client/server ns, so names need only be unique per namespace.
	if err := b.step("veths"); err != nil {
		return nil, err
	}
	q := uint32(cfg.Queues)
	for _, p := range []struct {
		local  string
		peerNS netns.NsHandle
		peer   string
	}{{OuterName, ns[0], l.ClientNS}, {InnerName, ns[2], l.ServerNS}} {
		la := netlink.NewLinkAttrs()
		la.Name = p.local
		la.MTU = cfg.MTU
		la.NumTxQueues = cfg.Queues
		la.NumRxQueues = cfg.Queues
		v := &netlink.Veth{
			LinkAttrs:       la,
			PeerName:        HostIfName,
			PeerNamespace:   netlink.NsFd(p.peerNS),
			PeerNumTxQueues: q,
			PeerNumRxQueues: q,
			PeerMTU:         uint32(cfg.MTU),
		}
		if err := gate.LinkAdd(v); err != nil {
			return nil, mapPerm(fmt.Sprintf("creating veth %s (%s) <-> %s (%s)", p.local, l.GateNS, HostIfName, p.peer), err)
		}
	}
	if err := b.done("veths"); err != nil {
		return nil, err
	}

	// 3. Real queue counts: creation with explicit num{tx,rx}queues should
	// give N real queues; fix them with ETHTOOL_SCHANNELS if not.
	if err := b.step("queues"); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		h          netns.NsHandle
		ns, ifname string
	}{
		{ns[0], l.ClientNS, HostIfName}, {ns[1], l.GateNS, OuterName}, {ns[1], l.GateNS, InnerName}, {ns[2], l.ServerNS, HostIfName},
	} {
		err := doInHandle(e.h, e.ns, func() error {
			ch, err := getChannels(e.ifname)
			if err != nil {
				return fmt.Errorf("lab: reading queue counts of %s in %s: %w", e.ifname, e.ns, err)
			}
			if ch.RX == cfg.Queues && ch.TX == cfg.Queues {
				return nil
			}
			if err := setChannels(e.ifname, cfg.Queues, cfg.Queues); err != nil {
				return fmt.Errorf("lab: setting %d queues on %s in %s (has rx %d tx %d, max %d/%d): %w", cfg.Queues, e.ifname, e.ns, ch.RX, ch.TX, ch.MaxRX, ch.MaxTX, err)
			}
			if ch, err = getChannels(e.ifname); err != nil || ch.RX != cfg.Queues || ch.TX != cfg.Queues {
				return fmt.Errorf("lab: %s in %s has rx %d tx %d queues, want %d (err %v)", e.ifname, e.ns, ch.RX, ch.TX, cfg.Queues, err)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	if err := b.done("queues"); err != nil {
		return nil, err
	}

	// 4. Sysctls, before any link is up: no DAD on the hosts, no IPv6 and
	// no forwarding on the gate (new namespaces inherit IPv4 settings such
	// as ip_forward from the initial namespace).
	if err := b.step("sysctls"); err != nil {
		return nil, err
	}
	for _, n := range []struct {
		h  netns.NsHandle
		ns string
	}{{ns[0], l.ClientNS}, {ns[2], l.ServerNS}} {
		err := doInHandle(n.h, n.ns, func() error {
			for _, kv := range [][2]string{
				{"net/ipv6/conf/default/accept_dad", "0"},
				{"net/ipv6/conf/" + HostIfName + "/accept_dad", "0"},
				{"net/ipv6/conf/" + HostIfName + "/disable_ipv6", "0"},
			} {
				if err := writeSysctl(kv[0], kv[1]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	err := doInHandle(ns[1], l.GateNS, func() error {
		for _, kv := range [][2]string{
			{"net/ipv4/ip_forward", "0"},
			{"net/ipv6/conf/all/forwarding", "0"},
			{"net/ipv6/conf/" + OuterName + "/disable_ipv6", "1"},
			{"net/ipv6/conf/" + InnerName + "/disable_ipv6", "1"},
			{"net/ipv4/conf/" + OuterName + "/proxy_arp", "0"},
			{"net/ipv4/conf/" + InnerName + "/proxy_arp", "0"},
		} {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := b.done("sysctls"); err != nil {
		return nil, err
	}

	// 5. Addresses.
	if err := b.step("addresses"); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		h      *netlink.Handle
		ns     string
		v4, v6 netip.Addr
	}{{client, l.ClientNS, ClientIP4, ClientIP6}, {server, l.ServerNS, ServerIP4, ServerIP6}} {
		link, err := a.h.LinkByName(HostIfName)
		if err != nil {
			return nil, fmt.Errorf("lab: finding %s in %s: %w", HostIfName, a.ns, err)
		}
		for _, p := range []netip.Prefix{netip.PrefixFrom(a.v4, prefixLen4), netip.PrefixFrom(a.v6, prefixLen6)} {
			addr := &netlink.Addr{IPNet: prefixToIPNet(p)}
			if p.Addr().Is6() {
				addr.Flags = unix.IFA_F_NODAD
			}
			if err := a.h.AddrAdd(link, addr); err != nil {
				return nil, fmt.Errorf("lab: adding %s to %s in %s: %w", p, HostIfName, a.ns, err)
			}
		}
	}
	if err := b.done("addresses"); err != nil {
		return nil, err
	}

	// 6. Links up: lo everywhere, then the veth ends.
	if err := b.step("up"); err != nil {
		return nil, err
	}
	for _, u := range []struct {
		h      *netlink.Handle
		ns     string
		ifname string
	}{
		{client, l.ClientNS, "lo"}, {gate, l.GateNS, "lo"}, {server, l.ServerNS, "lo"},
		{gate, l.GateNS, OuterName}, {gate, l.GateNS, InnerName},
		{client, l.ClientNS, HostIfName}, {server, l.ServerNS, HostIfName},
	} {
		link, err := u.h.LinkByName(u.ifname)
		if err == nil {
			err = u.h.LinkSetUp(link)
		}
		if err != nil {
			return nil, fmt.Errorf("lab: setting %s up in %s: %w", u.ifname, u.ns, err)
		}
	}
	if err := b.done("up"); err != nil {
		return nil, err
	}

	// 7. Wait until the hosts' IPv6 addresses are usable: even without
	// DAD, the kernel finishes an address (clears "tentative", installs
	// its local route) from a workqueue after the link is up, which can
	// lag by hundreds of ms while other namespaces are torn down. A packet
	// arriving before that is dropped.
	if err := b.step("ready"); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		h  *netlink.Handle
		ns string
		ip netip.Addr
	}{{client, l.ClientNS, ClientIP6}, {server, l.ServerNS, ServerIP6}} {
		if err := waitIPv6Ready(b.ctx, a.h, a.ip, ipv6ReadyTimeout); err != nil {
			return nil, fmt.Errorf("lab: %s on %s in %s: %w", a.ip, HostIfName, a.ns, err)
		}
	}
	if err := b.done("ready"); err != nil {
		return nil, err
	}

	// 8. Discover MACs and ifindexes.
	if err := b.step("discover"); err != nil {
		return nil, err
	}
	if err := l.discover(client, gate, server); err != nil {
		return nil, err
	}
	if err := b.done("discover"); err != nil {
		return nil, err
	}

	// 9. Optional static neighbours.
	if err := b.step("neighbors"); err != nil {
		return nil, err
	}
	if cfg.StaticNeighbors {
		if err := l.setHostNeighbors(client, server, l.ServerMAC, l.ClientMAC); err != nil {
			return nil, err
		}
	}
	if err := b.done("neighbors"); err != nil {
		return nil, err
	}
	if err := b.step("finish"); err != nil {
		return nil, err
	}
	b.created = nil // success: nothing to undo
	return l, nil
}

const ipv6ReadyTimeout = 10 * time.Second

// waitIPv6Ready polls until ip is a non-tentative address with its local
// route in place.
func waitIPv6Ready(ctx context.Context, h *netlink.Handle, ip netip.Addr, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Dst: hostPrefix(ip)}
	for {
		ready, state := false, "not present"
		addrs, err := h.AddrList(nil, netlink.FAMILY_V6)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if !a.IP.Equal(net.IP(ip.AsSlice())) {
				continue
			}
			switch {
			case a.Flags&unix.IFA_F_DADFAILED != 0:
				return fmt.Errorf("duplicate address detection failed")
			case a.Flags&unix.IFA_F_TENTATIVE != 0:
				state = "tentative"
			default:
				state = "without its local route"
				rs, err := h.RouteListFiltered(netlink.FAMILY_V6, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_DST)
				if err != nil {
					return err
				}
				ready = len(rs) > 0
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("address still %s after %v", state, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), bits)}
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return prefixToIPNet(netip.PrefixFrom(a, a.BitLen()))
}

// discover fills MACs and ifindexes from the kernel.
func (l *Lab) discover(client, gate, server *netlink.Handle) error {
	for _, d := range []struct {
		h      *netlink.Handle
		ns     string
		ifname string
		mac    *net.HardwareAddr
		idx    *int
	}{
		{client, l.ClientNS, HostIfName, &l.ClientMAC, &l.ClientIndex},
		{server, l.ServerNS, HostIfName, &l.ServerMAC, &l.ServerIndex},
		{gate, l.GateNS, OuterName, &l.OuterMAC, &l.OuterIndex},
		{gate, l.GateNS, InnerName, &l.InnerMAC, &l.InnerIndex},
	} {
		link, err := d.h.LinkByName(d.ifname)
		if err != nil {
			return fmt.Errorf("lab: finding %s in %s: %w", d.ifname, d.ns, err)
		}
		*d.mac = append(net.HardwareAddr(nil), link.Attrs().HardwareAddr...)
		*d.idx = link.Attrs().Index
	}
	return nil
}

// setHostNeighbors installs permanent entries: on the client, the
// server's addresses → toServer; on the server, the client's → toClient.
func (l *Lab) setHostNeighbors(client, server *netlink.Handle, toServer, toClient net.HardwareAddr) error {
	for _, e := range []struct {
		h   *netlink.Handle
		ns  string
		idx int
		ips []netip.Addr
		mac net.HardwareAddr
	}{
		{client, l.ClientNS, l.ClientIndex, []netip.Addr{ServerIP4, ServerIP6}, toServer},
		{server, l.ServerNS, l.ServerIndex, []netip.Addr{ClientIP4, ClientIP6}, toClient},
	} {
		for _, ip := range e.ips {
			if err := setPermNeigh(e.h, e.idx, ip, e.mac); err != nil {
				return fmt.Errorf("lab: neighbour %s -> %s in %s: %w", ip, e.mac, e.ns, err)
			}
		}
	}
	return nil
}

func family(ip netip.Addr) int {
	if ip.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

func setPermNeigh(h *netlink.Handle, idx int, ip netip.Addr, mac net.HardwareAddr) error {
	return h.NeighSet(&netlink.Neigh{
		LinkIndex:    idx,
		Family:       family(ip),
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(ip.AsSlice()),
		HardwareAddr: mac,
	})
}

// delNeigh deletes a neighbour entry; a missing one is not an error.
func delNeigh(h *netlink.Handle, idx int, ip netip.Addr, flags int) error {
	err := h.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: family(ip), IP: net.IP(ip.AsSlice()), Flags: flags})
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}
