package lab

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces and veth")
	}
}

// assertGone checks that no namespace of prefix is left, neither as a file
// under /run/netns nor in `ip netns list`.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	c, g, s := NSNames(prefix)
	for _, n := range []string{c, g, s} {
		if _, err := os.Lstat(nsPath(n)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists (lstat err %v)", nsPath(n), err)
		}
		if _, err := os.Lstat("/var/run/netns/" + n); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("/var/run/netns/%s still exists (lstat err %v)", n, err)
		}
	}
	ps, err := List()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(ps, prefix) {
		t.Errorf("List() still has %q: %v", prefix, ps)
	}
	if !haveIP(t) {
		return
	}
	out, err := exec.Command(ipPath(), "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix+"-") {
			t.Errorf("ip netns list still shows %s", f[0])
		}
	}
}

// testPrefix returns base + 6 random hex digits.
func testPrefix(t *testing.T, base string) string {
	t.Helper()
	p, err := randomPrefix()
	if err != nil {
		t.Fatal(err)
	}
	return base + strings.TrimPrefix(p, DefaultPrefix)
}

// haveIP tells whether iproute2's ip is installed (some checks use it).
func haveIP(t *testing.T) bool {
	t.Helper()
	if _, err := os.Stat(ipPath()); err == nil {
		return true
	}
	if _, err := exec.LookPath(ipPath()); err == nil {
		return true
	}
	t.Log("no `ip` (apt-get install iproute2): skipping the checks that use it")
	return false
}

func TestValidatePrefix(t *testing.T) {
	for _, p := range []string{"xg", "xg12ab34", "a", "lab-1", "0abc", "abcdefghijklmnop"} {
		if err := ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want nil", p, err)
		}
	}
	for _, p := range []string{"", "-a", "a-", "Abc", "a_b", "a/b", "a.b", "a b", "abcdefghijklmnopq", "..", "ü"} {
		err := ValidatePrefix(p)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidatePrefix(%q) = %v, want ErrInvalid", p, err)
		}
	}
	p, err := randomPrefix()
	if err != nil || ValidatePrefix(p) != nil || len(p) != 8 || !strings.HasPrefix(p, "xg") {
		t.Errorf("randomPrefix() = %q, %v", p, err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{{Queues: -1}, {Queues: MaxQueues + 1}, {MTU: 67}, {MTU: 100000}, {Prefix: "BAD"}} {
		if _, err := Up(cfg); !errors.Is(err, ErrInvalid) {
			t.Errorf("Up(%+v) = %v, want ErrInvalid", cfg, err)
		}
	}
}

func TestUpDown(t *testing.T) {
	needRoot(t)
	l, err := Up(Config{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Down() })
	if ValidatePrefix(l.Prefix) != nil || !strings.HasPrefix(l.Prefix, "xg") {
		t.Errorf("prefix %q", l.Prefix)
	}
	if l.Queues != 2 || l.MTU != 1500 {
		t.Errorf("Queues=%d MTU=%d", l.Queues, l.MTU)
	}
	for _, n := range []string{l.ClientNS, l.GateNS, l.ServerNS} {
		if !nsExists(n) {
			t.Errorf("namespace %s missing", n)
		}
		if _, err := os.Lstat("/var/run/netns/" + n); err != nil {
			t.Errorf("/var/run/netns/%s: %v", n, err)
		}
	}
	ps, err := List()
	if err != nil || !slices.Contains(ps, l.Prefix) {
		t.Errorf("List() = %v, %v; want it to contain %q", ps, err, l.Prefix)
	}

	ends := []struct{ ns, ifname string }{
		{l.ClientNS, HostIfName}, {l.GateNS, OuterName}, {l.GateNS, InnerName}, {l.ServerNS, HostIfName},
	}
	for _, e := range ends {
		rx, tx, err := Queues(e.ns, e.ifname)
		if err != nil || rx != 2 || tx != 2 {
			t.Errorf("%s/%s: ethtool queues rx=%d tx=%d err=%v, want 2/2", e.ns, e.ifname, rx, tx, err)
		}
		// What userspace sees in sysfs inside the namespace.
		if !haveIP(t) {
			continue
		}
		out, err := l.Command(context.Background(), e.ns, "ls", "/sys/class/net/"+e.ifname+"/queues").CombinedOutput()
		if err != nil {
			t.Errorf("ls queues of %s/%s: %v: %s", e.ns, e.ifname, err, out)
			continue
		}
		got := strings.Fields(string(out))
		slices.Sort(got)
		if want := []string{"rx-0", "rx-1", "tx-0", "tx-1"}; !slices.Equal(got, want) {
			t.Errorf("%s/%s: /sys/class/net/.../queues = %v, want %v", e.ns, e.ifname, got, want)
		}
	}

	// Links up, MTU, MACs, indexes, addresses.
	for _, e := range []struct {
		ns, ifname string
		mac        net.HardwareAddr
		idx        int
		addrs      []string
	}{
		{l.ClientNS, HostIfName, l.ClientMAC, l.ClientIndex, []string{"198.18.0.1/24", "2001:2::1/64"}},
		{l.ServerNS, HostIfName, l.ServerMAC, l.ServerIndex, []string{"198.18.0.2/24", "2001:2::2/64"}},
		{l.GateNS, OuterName, l.OuterMAC, l.OuterIndex, nil},
		{l.GateNS, InnerName, l.InnerMAC, l.InnerIndex, nil},
	} {
		h, err := handleByName(e.ns)
		if err != nil {
			t.Fatal(err)
		}
		link, err := h.LinkByName(e.ifname)
		if err != nil {
			h.Close()
			t.Fatalf("%s/%s: %v", e.ns, e.ifname, err)
		}
		a := link.Attrs()
		if a.Flags&net.FlagUp == 0 || a.OperState != netlink.OperUp {
			t.Errorf("%s/%s not up: flags %v oper %v", e.ns, e.ifname, a.Flags, a.OperState)
		}
		if a.MTU != 1500 {
			t.Errorf("%s/%s MTU %d", e.ns, e.ifname, a.MTU)
		}
		if a.HardwareAddr.String() != e.mac.String() || a.Index != e.idx || len(e.mac) != 6 {
			t.Errorf("%s/%s mac %s idx %d, lab has %s %d", e.ns, e.ifname, a.HardwareAddr, a.Index, e.mac, e.idx)
		}
		addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var global []string
		for _, ad := range addrs {
			if ad.IP.IsLinkLocalUnicast() {
				if e.ns == l.GateNS {
					t.Errorf("gate %s has link-local %s: IPv6 should be off", e.ifname, ad.IPNet)
				}
				continue
			}
			global = append(global, ad.IPNet.String())
			if ad.Flags&0x40 != 0 { // IFA_F_TENTATIVE
				t.Errorf("%s/%s: %s is tentative (DAD on?)", e.ns, e.ifname, ad.IPNet)
			}
		}
		slices.Sort(global)
		if !slices.Equal(global, e.addrs) {
			t.Errorf("%s/%s addresses %v, want %v", e.ns, e.ifname, global, e.addrs)
		}
		lo, err := h.LinkByName("lo")
		if err != nil || lo.Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("%s: lo not up (%v)", e.ns, err)
		}
		h.Close()
	}
	for _, kv := range []struct{ ns, key, want string }{
		{l.ClientNS, "net.ipv6.conf.eth0.accept_dad", "0"},
		{l.ServerNS, "net.ipv6.conf.eth0.accept_dad", "0"},
		{l.GateNS, "net.ipv6.conf.outer.disable_ipv6", "1"},
		{l.GateNS, "net.ipv6.conf.inner.disable_ipv6", "1"},
		{l.GateNS, "net.ipv4.ip_forward", "0"},
	} {
		if got, err := GetSysctl(kv.ns, kv.key); err != nil || got != kv.want {
			t.Errorf("%s: %s = %q, %v; want %q", kv.ns, kv.key, got, err, kv.want)
		}
	}

	// The gate itself sent nothing (no ND/RS/MLD, no ARP).
	time.Sleep(200 * time.Millisecond)
	for _, ifname := range []string{OuterName, InnerName} {
		if _, tx, err := l.LinkStats(l.GateNS, ifname); err != nil || tx != 0 {
			t.Errorf("gate %s sent %d packets (err %v), want 0", ifname, tx, err)
		}
	}

	if err := l.Down(); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertGone(t, l.Prefix)
	if err := l.Down(); err != nil {
		t.Fatalf("second Down: %v", err)
	}
	if err := Remove(l.Prefix); err != nil {
		t.Fatalf("Remove after Down: %v", err)
	}
}

func TestQueuesAndMTU(t *testing.T) {
	needRoot(t)
	for _, c := range []struct{ q, mtu int }{{1, 9000}, {4, 3000}} {
		l := ForTest(t, Config{Queues: c.q, MTU: c.mtu})
		for _, e := range [][2]string{{l.ClientNS, HostIfName}, {l.GateNS, OuterName}, {l.GateNS, InnerName}, {l.ServerNS, HostIfName}} {
			rx, tx, err := Queues(e[0], e[1])
			if err != nil || rx != c.q || tx != c.q {
				t.Errorf("%v: queues %d/%d %v, want %d", e, rx, tx, err, c.q)
			}
		}
		o, err := Open(l.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		if o.Queues != c.q || o.MTU != c.mtu {
			t.Errorf("Open: queues %d mtu %d, want %d %d", o.Queues, o.MTU, c.q, c.mtu)
		}
	}
}

func TestSetChannels(t *testing.T) {
	needRoot(t)
	l := ForTest(t, Config{Queues: 4})
	for _, c := range [][2]int{{1, 1}, {2, 3}, {4, 4}} {
		if err := l.Do(l.GateNS, func() error { return setChannels(OuterName, c[0], c[1]) }); err != nil {
			t.Fatalf("set %v: %v", c, err)
		}
		rx, tx, err := Queues(l.GateNS, OuterName)
		if err != nil || rx != c[0] || tx != c[1] {
			t.Errorf("after set %v: rx %d tx %d err %v", c, rx, tx, err)
		}
	}
}

func TestParallelLabs(t *testing.T) {
	needRoot(t)
	for i := range 3 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := ForTest(t, Config{Prefix: fmt.Sprintf("%s-%d", testPrefix(t, "xgp"), i)})
			if err := l.SetKernelForwarding(true); err != nil {
				t.Fatal(err)
			}
			// Same addresses in every lab, yet each one's traffic stays in it.
			expectUDP(t, l, l.ServerIP4, true)
			expectUDP(t, l, l.ServerIP6, true)
			rx, _, err := l.LinkStats(l.ServerNS, HostIfName)
			if err != nil || rx < 2 {
				t.Errorf("server rx %d, %v", rx, err)
			}
		})
	}
}

// listenUDP opens a UDP socket on the server's address inside the server ns.
func listenUDP(t *testing.T, l *Lab, ip netip.Addr) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := l.Do(l.ServerNS, func() error {
		var err error
		c, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", l.ServerNS, err)
	}
	return c
}

// expectUDP sends a datagram from the client to dst and checks whether the
// server gets it (within 300 ms when it should not, 3 s when it should).
func expectUDP(t *testing.T, l *Lab, dst netip.Addr, arrive bool) {
	t.Helper()
	srv := listenUDP(t, l, dst)
	defer srv.Close()
	port := srv.LocalAddr().(*net.UDPAddr).Port
	var cl *net.UDPConn
	err := l.Do(l.ClientNS, func() error {
		var err error
		cl, err = net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(port))))
		return err
	})
	if err != nil {
		t.Fatalf("dial in %s: %v", l.ClientNS, err)
	}
	defer cl.Close()
	msg := []byte("xskgate lab " + l.Prefix)
	if _, err := cl.Write(msg); err != nil {
		t.Fatalf("send to %s: %v", dst, err)
	}
	wait := 300 * time.Millisecond
	if arrive {
		wait = 3 * time.Second
	}
	_ = srv.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 256)
	n, from, err := srv.ReadFromUDPAddrPort(buf)
	got := err == nil
	if got != arrive {
		t.Errorf("UDP client -> %s: arrived=%v (err %v), want %v", dst, got, err, arrive)
		if os.Getenv("LAB_DEBUG") != "" {
			for _, ns := range []string{l.ClientNS, l.GateNS, l.ServerNS} {
				out, _ := exec.Command("sh", "-c", "ip -n "+ns+" -6 route; ip -n "+ns+" -6 neigh; ip -n "+ns+" -6 neigh show proxy; ip -n "+ns+" -s link; ip -n "+ns+" addr; ip netns exec "+ns+" cat /proc/net/snmp6 | grep -v ' 0$'").CombinedOutput()
				t.Logf("=== %s\n%s", ns, out)
			}
		}
		return
	}
	if got {
		if string(buf[:n]) != string(msg) {
			t.Errorf("UDP payload %q, want %q", buf[:n], msg)
		}
		want := l.ClientIP4
		if dst.Is6() {
			want = l.ClientIP6
		}
		if from.Addr().Unmap() != want {
			t.Errorf("UDP from %s, want %s", from.Addr(), want)
		}
	}
}

// icmpEcho sends an ICMP(v6) echo request from the client ns to dst and
// reports whether a reply came within wait. Needs no ping binary.
func icmpEcho(t *testing.T, l *Lab, dst netip.Addr, wait time.Duration) bool {
	t.Helper()
	network, req, rep := "ip4:icmp", byte(8), byte(0)
	if dst.Is6() {
		network, req, rep = "ip6:ipv6-icmp", 128, 129
	}
	var c net.PacketConn
	err := l.Do(l.ClientNS, func() error {
		var err error
		c, err = net.ListenPacket(network, "")
		return err
	})
	if err != nil {
		t.Fatalf("icmp socket in %s: %v", l.ClientNS, err)
	}
	defer c.Close()
	id := uint16(os.Getpid())
	msg := []byte{req, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'x', 'g'}
	if dst.Is4() {
		var sum uint32
		for i := 0; i < len(msg); i += 2 {
			sum += uint32(binary.BigEndian.Uint16(msg[i:]))
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		binary.BigEndian.PutUint16(msg[2:], ^uint16(sum))
	} // the kernel fills in the ICMPv6 checksum
	if _, err := c.WriteTo(msg, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		t.Fatalf("icmp send to %s: %v", dst, err)
	}
	deadline := time.Now().Add(wait)
	_ = c.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return false
		}
		fa, _ := netip.AddrFromSlice(from.(*net.IPAddr).IP)
		if n >= 8 && buf[0] == rep && fa.Unmap() == dst && binary.BigEndian.Uint16(buf[4:]) == id {
			return true
		}
	}
}

func pingBinary(t *testing.T, l *Lab, dst netip.Addr) (ok, ran bool) {
	t.Helper()
	if _, err := exec.LookPath("ping"); err != nil {
		t.Logf("no ping binary (apt-get install iputils-ping): checked with in-process ICMP only")
		return false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.Command(ctx, l.ClientNS, "ping", "-c", "2", "-W", "1", dst.String()).CombinedOutput()
	t.Logf("ping %s: err=%v\n%s", dst, err, out)
	return err == nil, true
}

func hostNeighMAC(t *testing.T, ns string, idx int, ip netip.Addr) (string, bool) {
	t.Helper()
	h, err := handleByName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ns4, err := h.NeighList(idx, family(ip))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns4 {
		if a, _ := netip.AddrFromSlice(n.IP); a.Unmap() == ip && n.State&netlink.NUD_PERMANENT != 0 {
			return n.HardwareAddr.String(), true
		}
	}
	return "", false
}

func TestIsolationAndKernelForwarding(t *testing.T) {
	needRoot(t)
	l := ForTest(t, Config{StaticNeighbors: true})
	for _, ip := range []netip.Addr{l.ServerIP4, l.ServerIP6} {
		if mac, ok := hostNeighMAC(t, l.ClientNS, l.ClientIndex, ip); !ok || mac != l.ServerMAC.String() {
			t.Errorf("client static neighbour %s = %q %v, want %s", ip, mac, ok, l.ServerMAC)
		}
	}
	for _, ip := range []netip.Addr{l.ClientIP4, l.ClientIP6} {
		if mac, ok := hostNeighMAC(t, l.ServerNS, l.ServerIndex, ip); !ok || mac != l.ClientMAC.String() {
			t.Errorf("server static neighbour %s = %q %v, want %s", ip, mac, ok, l.ClientMAC)
		}
	}

	// Nothing bridges outer and inner: nothing gets through.
	_, gateTx0, err := l.LinkStats(l.GateNS, OuterName)
	if err != nil {
		t.Fatal(err)
	}
	expectUDP(t, l, l.ServerIP4, false)
	expectUDP(t, l, l.ServerIP6, false)
	if icmpEcho(t, l, l.ServerIP4, 300*time.Millisecond) {
		t.Error("ICMP echo reached the server with no forwarder")
	}
	// The gate itself stays silent.
	if _, gateTx, _ := l.LinkStats(l.GateNS, OuterName); gateTx != gateTx0 {
		t.Errorf("gate sent %d packets on outer", gateTx-gateTx0)
	}
	if rx, _, _ := l.LinkStats(l.GateNS, OuterName); rx == 0 {
		t.Error("outer received nothing from the client")
	}

	if err := l.SetKernelForwarding(true); err != nil {
		t.Fatal(err)
	}
	if err := l.SetKernelForwarding(true); err != nil {
		t.Fatalf("second SetKernelForwarding(true): %v", err)
	}
	if ok, ran := pingBinary(t, l, l.ServerIP4); ran && !ok {
		t.Error("ping 198.18.0.2 failed with kernel forwarding on")
	}
	for _, ip := range []netip.Addr{l.ServerIP4, l.ServerIP6} {
		if !icmpEcho(t, l, ip, 3*time.Second) {
			t.Errorf("ICMP echo to %s failed with kernel forwarding on", ip)
		}
		expectUDP(t, l, ip, true)
	}
	if mac, _ := hostNeighMAC(t, l.ClientNS, l.ClientIndex, l.ServerIP4); mac != l.OuterMAC.String() {
		t.Errorf("client neighbour for server = %s, want outer %s", mac, l.OuterMAC)
	}

	if err := l.SetKernelForwarding(false); err != nil {
		t.Fatal(err)
	}
	if ok, ran := pingBinary(t, l, l.ServerIP4); ran && ok {
		t.Error("ping 198.18.0.2 works after SetKernelForwarding(false)")
	}
	if icmpEcho(t, l, l.ServerIP4, 300*time.Millisecond) {
		t.Error("ICMP echo works after SetKernelForwarding(false)")
	}
	expectUDP(t, l, l.ServerIP4, false)
	expectUDP(t, l, l.ServerIP6, false)
	for _, ip := range []netip.Addr{l.ServerIP4, l.ServerIP6} {
		if mac, ok := hostNeighMAC(t, l.ClientNS, l.ClientIndex, ip); !ok || mac != l.ServerMAC.String() {
			t.Errorf("after off: client neighbour %s = %q %v, want static %s", ip, mac, ok, l.ServerMAC)
		}
	}
	for _, kv := range [][2]string{
		{"net.ipv4.ip_forward", "0"}, {"net.ipv4.conf.outer.proxy_arp", "0"}, {"net.ipv4.conf.inner.proxy_arp", "0"},
		{"net.ipv6.conf.all.forwarding", "0"}, {"net.ipv6.conf.outer.disable_ipv6", "1"}, {"net.ipv6.conf.inner.disable_ipv6", "1"},
	} {
		if got, err := GetSysctl(l.GateNS, kv[0]); err != nil || got != kv[1] {
			t.Errorf("after off: %s = %q %v, want %s", kv[0], got, err, kv[1])
		}
	}
	h, err := handleByName(l.GateNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	rs, err := h.RouteList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.LinkIndex == l.OuterIndex || r.LinkIndex == l.InnerIndex {
			t.Errorf("after off: gate route left: %v", r)
		}
	}
	if err := l.SetKernelForwarding(false); err != nil {
		t.Fatalf("second SetKernelForwarding(false): %v", err)
	}
}

func TestKernelForwardingWithoutStaticNeighbors(t *testing.T) {
	needRoot(t)
	l := ForTest(t, Config{})
	if _, ok := hostNeighMAC(t, l.ClientNS, l.ClientIndex, l.ServerIP4); ok {
		t.Error("permanent neighbour without StaticNeighbors")
	}
	if err := l.SetKernelForwarding(true); err != nil {
		t.Fatal(err)
	}
	expectUDP(t, l, l.ServerIP4, true)
	expectUDP(t, l, l.ServerIP6, true)
	if err := l.SetKernelForwarding(false); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ns  string
		idx int
		ip  netip.Addr
	}{{l.ClientNS, l.ClientIndex, l.ServerIP4}, {l.ClientNS, l.ClientIndex, l.ServerIP6}, {l.ServerNS, l.ServerIndex, l.ClientIP4}, {l.ServerNS, l.ServerIndex, l.ClientIP6}} {
		if mac, ok := hostNeighMAC(t, c.ns, c.idx, c.ip); ok {
			t.Errorf("after off: %s still has permanent %s -> %s", c.ns, c.ip, mac)
		}
	}
	// No static neighbours and no forwarder: ARP goes unanswered.
	expectUDP(t, l, l.ServerIP4, false)
}

func TestOpen(t *testing.T) {
	needRoot(t)
	l := ForTest(t, Config{StaticNeighbors: true, Queues: 3, MTU: 4000})
	o, err := Open(l.Prefix)
	if err != nil {
		t.Fatal(err)
	}
	if o.Prefix != l.Prefix || o.ClientNS != l.ClientNS || o.GateNS != l.GateNS || o.ServerNS != l.ServerNS ||
		o.Queues != 3 || o.MTU != 4000 || !o.StaticNeighbors ||
		o.ClientMAC.String() != l.ClientMAC.String() || o.ServerMAC.String() != l.ServerMAC.String() ||
		o.OuterMAC.String() != l.OuterMAC.String() || o.InnerMAC.String() != l.InnerMAC.String() ||
		o.OuterIndex != l.OuterIndex || o.InnerIndex != l.InnerIndex ||
		o.ClientIndex != l.ClientIndex || o.ServerIndex != l.ServerIndex ||
		o.ClientIP4 != l.ClientIP4 || o.ServerIP6 != l.ServerIP6 {
		t.Errorf("Open = %+v\nUp   = %+v", o, l)
	}
	// The reopened lab is fully usable, and can take it down.
	if err := o.SetKernelForwarding(true); err != nil {
		t.Fatal(err)
	}
	expectUDP(t, o, o.ServerIP4, true)
	if err := o.Down(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l.Prefix)
	if _, err := Open(l.Prefix); !errors.Is(err, ErrNotFound) {
		t.Errorf("Open after Down = %v, want ErrNotFound", err)
	}
	if _, err := Open("Bad!"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Open(bad) = %v, want ErrInvalid", err)
	}
}

func TestUpExistingPrefix(t *testing.T) {
	needRoot(t)
	l := ForTest(t, Config{})
	_, err := Up(Config{Prefix: l.Prefix})
	if !errors.Is(err, ErrExists) || !strings.Contains(err.Error(), "xskgate lab down --prefix "+l.Prefix) {
		t.Fatalf("Up on existing prefix = %v, want ErrExists with the fix", err)
	}
	// The failed Up must not have touched the existing lab.
	if _, err := Open(l.Prefix); err != nil {
		t.Fatalf("existing lab damaged: %v", err)
	}
}

func TestUpFailureLeavesNothing(t *testing.T) {
	needRoot(t)
	prefix := testPrefix(t, "xgf")
	if _, err := Up(Config{Prefix: prefix, MTU: 100000}); err == nil {
		t.Fatal("Up with MTU 100000 succeeded")
	} else {
		t.Logf("MTU 100000: %v", err)
	}
	assertGone(t, prefix)
	// The same MTU past validation: the kernel rejects it while the veths
	// are made, after the namespaces exist.
	b := &builder{cfg: Config{Prefix: prefix, Queues: 2, MTU: 100000}, ctx: context.Background()}
	if _, err := b.build(); err == nil {
		t.Fatal("kernel accepted MTU 100000")
	} else {
		t.Logf("kernel, MTU 100000: %v", err)
	}
	if !nsExists(prefix + "-gate") {
		t.Fatal("the kernel failure came before the namespaces: not a midway failure")
	}
	if err := b.cleanup(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, prefix)
	// A failure after every step, including the kernel's part.
	for _, step := range []string{"namespaces", "veths", "queues", "sysctls", "addresses", "up", "ready", "discover", "neighbors"} {
		injected := errors.New("injected failure")
		_, err := Up(Config{Prefix: prefix, StaticNeighbors: true, afterStep: func(s string) error {
			if s == step {
				return injected
			}
			return nil
		}})
		if !errors.Is(err, injected) {
			t.Fatalf("step %s: err %v", step, err)
		}
		assertGone(t, prefix)
		// Interrupted (context cancelled, as the CLI does on SIGINT) after
		// the same step.
		ctx, cancel := context.WithCancel(context.Background())
		_, err = UpContext(ctx, Config{Prefix: prefix, afterStep: func(s string) error {
			if s == step {
				cancel()
			}
			return nil
		}})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled after %s: err %v", step, err)
		}
		assertGone(t, prefix)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := UpContext(ctx, Config{Prefix: prefix}); !errors.Is(err, context.Canceled) {
		t.Fatalf("UpContext(cancelled) = %v", err)
	}
	assertGone(t, prefix)
}

func TestDownConcurrentAndRemove(t *testing.T) {
	needRoot(t)
	l, err := Up(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() { errs <- l.Down() })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	assertGone(t, l.Prefix)

	// Remove cleans up a half lab (e.g. after a crash).
	l2, err := Up(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := deleteNamedNS(l2.ClientNS); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(l2.Prefix); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("Open(half lab) = %v", err)
	}
	if ps, _ := List(); !slices.Contains(ps, l2.Prefix) {
		t.Errorf("List() = %v misses half lab %s", ps, l2.Prefix)
	}
	if err := Remove(l2.Prefix); err != nil {
		t.Fatal(err)
	}
	assertGone(t, l2.Prefix)
}

func TestDo(t *testing.T) {
	needRoot(t)
	l := ForTest(t, Config{})
	var names []string
	err := l.Do(l.GateNS, func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			names = append(names, i.Name)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"inner", "lo", "outer"}) {
		t.Errorf("interfaces in gate: %v", names)
	}
	// The caller's namespace is unchanged.
	if _, err := net.InterfaceByName(OuterName); err == nil {
		t.Error("outer visible outside the gate ns")
	}
	sentinel := errors.New("boom")
	if err := l.Do(l.ClientNS, func() error { return sentinel }); err != sentinel {
		t.Errorf("Do error = %v", err)
	}
	func() {
		defer func() {
			if p := recover(); p != "panic in ns" {
				t.Errorf("recovered %v", p)
			}
		}()
		_ = l.Do(l.ClientNS, func() error { panic("panic in ns") })
	}()
	if err := l.Do(l.Prefix+"-nope", func() error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("Do(missing ns) = %v", err)
	}
	if err := l.Do("../etc", func() error { return nil }); err == nil {
		t.Error("Do(../etc) succeeded")
	}
}

// Nothing keeps a namespace alive after Down: no fd of ours leaks.
func TestNoFDLeak(t *testing.T) {
	needRoot(t)
	cycle := func() {
		l, err := Up(Config{StaticNeighbors: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.SetKernelForwarding(true); err != nil {
			t.Fatal(err)
		}
		expectUDP(t, l, l.ServerIP4, true)
		if _, _, err := l.LinkStats(l.GateNS, OuterName); err != nil {
			t.Fatal(err)
		}
		if _, err := Open(l.Prefix); err != nil {
			t.Fatal(err)
		}
		if err := l.SetKernelForwarding(false); err != nil {
			t.Fatal(err)
		}
		if err := l.Down(); err != nil {
			t.Fatal(err)
		}
	}
	cycle() // warm up the runtime's own fds (epoll, ...)
	before := openFDs(t)
	for range 3 {
		cycle()
	}
	// A leak is an fd open now that was not before (or now names
	// something else). One that closed meanwhile is not: an earlier
	// test's pipe or socket may be closed late by its goroutine.
	after := openFDs(t)
	for fd, target := range after {
		if before[fd] != target {
			t.Errorf("fd %s -> %s opened by 3 lab cycles and still open (%d fds before, %d after)", fd, target, len(before), len(after))
		}
	}
}

// openFDs maps this process's open fds to what they point at.
func openFDs(t *testing.T) map[string]string {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]string, len(ents))
	for _, e := range ents {
		// The directory's own fd is gone by now: it reads as an error.
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil {
			m[e.Name()] = target
		}
	}
	return m
}
