package lab

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// SetKernelForwarding switches the baseline "plain Linux forwarding" mode,
// for IPv4 and IPv6.
//
// On: in the gate, ip_forward=1 and IPv6 forwarding=1; proxy_arp=1 and
// proxy_ndp=1 (with proxy entries) on outer and inner; IPv6 enabled on
// outer/inner (without DAD); host routes to the client's addresses via
// outer and to the server's via inner; and, so that benchmarks never wait
// for ARP/ND, permanent neighbours: client: server's addresses → outer's
// MAC; server: client's addresses → inner's MAC; gate: client's addresses
// → client's MAC on outer, server's → server's MAC on inner.
//
// Off undoes all of it (routes and gate neighbours removed, forwarding,
// proxy_arp and proxy_ndp 0, IPv6 disabled again on outer/inner) and
// restores the hosts' neighbours: the StaticNeighbors entries if the lab
// has them, else none. Both directions are idempotent.
func (l *Lab) SetKernelForwarding(on bool) error {
	client, err := handleByName(l.ClientNS)
	if err != nil {
		return err
	}
	defer client.Close()
	gate, err := handleByName(l.GateNS)
	if err != nil {
		return err
	}
	defer gate.Close()
	server, err := handleByName(l.ServerNS)
	if err != nil {
		return err
	}
	defer server.Close()
	if on {
		err = l.forwardingOn(client, gate, server)
	} else {
		err = l.forwardingOff(client, gate, server)
	}
	if err != nil {
		return fmt.Errorf("lab: kernel forwarding %s: %w", onOff(on), err)
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

// gateSide says, for each client/server address, which gate link leads to
// it and which MAC it has.
type gateSide struct {
	ip      netip.Addr
	idx     int    // gate ifindex towards it
	ifname  string // gate link towards it
	other   string // the other gate link (where it must be proxied)
	otherIx int
	mac     []byte
}

func (l *Lab) gateSides() []gateSide {
	return []gateSide{
		{ClientIP4, l.OuterIndex, OuterName, InnerName, l.InnerIndex, l.ClientMAC},
		{ClientIP6, l.OuterIndex, OuterName, InnerName, l.InnerIndex, l.ClientMAC},
		{ServerIP4, l.InnerIndex, InnerName, OuterName, l.OuterIndex, l.ServerMAC},
		{ServerIP6, l.InnerIndex, InnerName, OuterName, l.OuterIndex, l.ServerMAC},
	}
}

func (l *Lab) forwardingOn(client, gate, server *netlink.Handle) error {
	// Sysctls. accept_dad=0 before enabling IPv6 so the gate's link-local
	// addresses are usable at once.
	err := doInNS(l.GateNS, func() error {
		for _, kv := range [][2]string{
			{"net/ipv6/conf/" + OuterName + "/accept_dad", "0"},
			{"net/ipv6/conf/" + InnerName + "/accept_dad", "0"},
			{"net/ipv6/conf/" + OuterName + "/disable_ipv6", "0"},
			{"net/ipv6/conf/" + InnerName + "/disable_ipv6", "0"},
			{"net/ipv4/conf/" + OuterName + "/proxy_arp", "1"},
			{"net/ipv4/conf/" + InnerName + "/proxy_arp", "1"},
			{"net/ipv6/conf/all/proxy_ndp", "1"},
			{"net/ipv6/conf/" + OuterName + "/proxy_ndp", "1"},
			{"net/ipv6/conf/" + InnerName + "/proxy_ndp", "1"},
			{"net/ipv4/ip_forward", "1"},
			{"net/ipv6/conf/all/forwarding", "1"},
		} {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range l.gateSides() {
		r := &netlink.Route{LinkIndex: s.idx, Dst: hostPrefix(s.ip), Scope: netlink.SCOPE_LINK}
		if err := gate.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s dev %s in %s: %w", s.ip, s.ifname, l.GateNS, err)
		}
		if err := setPermNeigh(gate, s.idx, s.ip, s.mac); err != nil {
			return fmt.Errorf("neighbour %s dev %s in %s: %w", s.ip, s.ifname, l.GateNS, err)
		}
		if s.ip.Is6() {
			// `ip -6 neigh add proxy <ip> dev <other>`: answer ND for it
			// on the other side.
			p := &netlink.Neigh{LinkIndex: s.otherIx, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: s.ip.AsSlice()}
			if err := gate.NeighSet(p); err != nil {
				return fmt.Errorf("proxy neighbour %s dev %s in %s: %w", s.ip, s.other, l.GateNS, err)
			}
		}
	}
	return l.setHostNeighbors(client, server, l.OuterMAC, l.InnerMAC)
}

func (l *Lab) forwardingOff(client, gate, server *netlink.Handle) error {
	var errs []error
	err := doInNS(l.GateNS, func() error {
		var errs []error
		for _, kv := range [][2]string{
			{"net/ipv4/ip_forward", "0"},
			{"net/ipv6/conf/all/forwarding", "0"},
			{"net/ipv4/conf/" + OuterName + "/proxy_arp", "0"},
			{"net/ipv4/conf/" + InnerName + "/proxy_arp", "0"},
			{"net/ipv6/conf/all/proxy_ndp", "0"},
			{"net/ipv6/conf/" + OuterName + "/proxy_ndp", "0"},
			{"net/ipv6/conf/" + InnerName + "/proxy_ndp", "0"},
		} {
			if err := writeSysctl(kv[0], kv[1]); err != nil {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		errs = append(errs, err)
	}
	for _, s := range l.gateSides() {
		r := &netlink.Route{LinkIndex: s.idx, Dst: hostPrefix(s.ip), Scope: netlink.SCOPE_LINK}
		if err := gate.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting route %s dev %s in %s: %w", s.ip, s.ifname, l.GateNS, err))
		}
		if err := delNeigh(gate, s.idx, s.ip, 0); err != nil {
			errs = append(errs, fmt.Errorf("deleting neighbour %s dev %s in %s: %w", s.ip, s.ifname, l.GateNS, err))
		}
		if s.ip.Is6() {
			if err := delNeigh(gate, s.otherIx, s.ip, netlink.NTF_PROXY); err != nil {
				errs = append(errs, fmt.Errorf("deleting proxy neighbour %s dev %s in %s: %w", s.ip, s.other, l.GateNS, err))
			}
		}
	}
	// Disabling IPv6 again drops the gate's link-local addresses (and any
	// IPv6 route left on outer/inner): the gate is silent once more.
	err = doInNS(l.GateNS, func() error {
		return errors.Join(
			writeSysctl("net/ipv6/conf/"+OuterName+"/disable_ipv6", "1"),
			writeSysctl("net/ipv6/conf/"+InnerName+"/disable_ipv6", "1"),
		)
	})
	if err != nil {
		errs = append(errs, err)
	}
	if l.StaticNeighbors {
		if err := l.setHostNeighbors(client, server, l.ServerMAC, l.ClientMAC); err != nil {
			errs = append(errs, err)
		}
	} else {
		for _, e := range []struct {
			h   *netlink.Handle
			ns  string
			idx int
			ip  netip.Addr
		}{
			{client, l.ClientNS, l.ClientIndex, ServerIP4}, {client, l.ClientNS, l.ClientIndex, ServerIP6},
			{server, l.ServerNS, l.ServerIndex, ClientIP4}, {server, l.ServerNS, l.ServerIndex, ClientIP6},
		} {
			if err := delNeigh(e.h, e.idx, e.ip, 0); err != nil {
				errs = append(errs, fmt.Errorf("deleting neighbour %s in %s: %w", e.ip, e.ns, err))
			}
		}
	}
	return errors.Join(errs...)
}
