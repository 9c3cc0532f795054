package protect

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/packet"
)

// segSniffer watches the client's eth0 for the segments a server port
// sends, and keeps per client port the last one's IP and TCP headers and
// where the server's sequence space continues after it.
type segSniffer struct {
	fd          int
	sport       uint16
	mu          sync.Mutex
	conns       map[uint16]*sniffed // by client port
	done        chan struct{}
	parsedFrame packet.Packet
}

type sniffed struct {
	hdr     []byte // IP + TCP header of the last segment, as the client saw it
	next    uint32 // seq after it
	payload int    // data bytes seen
}

func newSegSniffer(t *testing.T, l *lab.Lab, sport uint16) *segSniffer {
	t.Helper()
	s := &segSniffer{fd: -1, sport: sport, conns: map[uint16]*sniffed{}, done: make(chan struct{})}
	if err := l.Do(l.ClientNS, func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		s.fd = fd
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: l.ClientIndex})
	}); err != nil {
		t.Fatal(err)
	}
	tv := unix.Timeval{Usec: 100000}
	unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, _, err := unix.Recvfrom(s.fd, buf, 0)
			if err != nil {
				if err == unix.EAGAIN || err == unix.EINTR {
					continue
				}
				return
			}
			p := &s.parsedFrame
			if p.Parse(buf[:n]) != nil || p.Proto != packet.ProtoTCP || p.L4Off < 0 || p.SrcPort != s.sport {
				continue
			}
			s.mu.Lock()
			c := s.conns[p.DstPort]
			if c == nil {
				c = &sniffed{}
				s.conns[p.DstPort] = c
			}
			c.hdr = append(c.hdr[:0], buf[p.L3Off:p.L4Off+p.TCP.DataOff]...)
			c.next = p.TCP.Seq + uint32(p.PayloadLen)
			c.payload += p.PayloadLen
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		unix.Shutdown(s.fd, unix.SHUT_RDWR)
		unix.Close(s.fd)
		<-s.done
	})
	return s
}

// TestLabPMTUD: path MTU discovery through the SYN proxy. A server sends
// data over a proxied connection; then a "frag needed" (IPv4) or "packet
// too big" (IPv6) for MTU 1280 comes in from the Internet side quoting the
// server's next segment as the client side sees it, in the proxy's
// sequence space. The gate translates the quote back, so the server's
// kernel accepts the error (it ignores one whose quoted seq is outside
// SND.UNA..SND.NXT) and its socket's path MTU drops to 1280. Untranslated,
// it stayed at 1500: a black hole behind any smaller link.
func TestLabPMTUD(t *testing.T) {
	r := newRig(t, labConfig(ModeMitigate)) // every connection SYN-proxied
	const sport = 5202
	const mtu = 1280
	for _, v6 := range []bool{false, true} {
		cli, srv := r.l.ClientIP4, r.l.ServerIP4
		if v6 {
			cli, srv = r.l.ClientIP6, r.l.ServerIP6
		}
		t.Run(srv.String(), func(t *testing.T) {
			sn := newSegSniffer(t, r.l, sport)
			var ln net.Listener
			if err := r.l.Do(r.l.ServerNS, func() error {
				var err error
				ln, err = net.Listen("tcp", netip.AddrPortFrom(srv, sport).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			accepted := make(chan net.Conn, 1)
			go func() {
				c, err := ln.Accept()
				if err != nil {
					close(accepted)
					return
				}
				c.Write(make([]byte, 1000))
				accepted <- c
			}()
			var c net.Conn
			if err := r.l.Do(r.l.ClientNS, func() error {
				var err error
				c, err = (&net.Dialer{Timeout: 5 * time.Second}).Dial("tcp", netip.AddrPortFrom(srv, sport).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			cport := uint16(c.LocalAddr().(*net.TCPAddr).Port)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.ReadFull(c, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
			sc, ok := <-accepted
			if !ok {
				t.Fatal("accept failed")
			}
			defer sc.Close()
			// The client's kernel had the data before the application; the
			// sniffer's goroutine may still be reading it.
			var quote []byte
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
				seen := 0
				sn.mu.Lock()
				if cs := sn.conns[cport]; cs != nil {
					if seen = cs.payload; seen >= 1000 {
						quote = append([]byte(nil), cs.hdr...)
						// The server's next segment: SND.NXT, which is
						// SND.UNA once the client acked everything.
						binary.BigEndian.PutUint32(quote[cs.tcpOff()+4:], cs.next)
					}
				}
				sn.mu.Unlock()
				if quote != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("sniffer saw %d of the server's 1000 bytes", seen)
				}
			}
			if got := pmtu(t, sc); got != 1500 {
				t.Fatalf("server's path MTU %d before the error", got)
			}
			snd := newRawSender(t, r.l)
			if err := unix.Sendto(snd.fd, ptbFrame(t, r.l, cli, srv, mtu, quote), 0, &snd.sa); err != nil {
				t.Fatal(err)
			}
			for deadline := time.Now().Add(5 * time.Second); pmtu(t, sc) != mtu; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("server's path MTU still %d 5 s after the error (icmp_translated %d)", pmtu(t, sc), r.i.Stats().Proxy["icmp_translated"])
				}
			}
			t.Logf("server's path MTU %d; icmp_translated %d", mtu, r.i.Stats().Proxy["icmp_translated"])
		})
	}
}

// tcpOff is where the kept segment's TCP header starts in hdr.
func (c *sniffed) tcpOff() int {
	if c.hdr[0]>>4 == 6 {
		return 40 // the lab's servers send no extension headers
	}
	return int(c.hdr[0]&0xf) * 4
}

// pmtu is the socket's path MTU (TCP_INFO).
func pmtu(t *testing.T, c net.Conn) uint32 {
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	if err := rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return info.Pmtu
}

// ptbFrame is a "fragmentation needed" (IPv4) or "packet too big" (IPv6)
// for mtu from the client's address to the server, quoting quote, as it
// leaves the client's eth0 toward the gate.
func ptbFrame(t *testing.T, l *lab.Lab, cli, srv netip.Addr, mtu uint16, quote []byte) []byte {
	eth := &layers.Ethernet{SrcMAC: l.ClientMAC, DstMAC: l.ServerMAC}
	var ls []gopacket.SerializableLayer
	if cli.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ls = []gopacket.SerializableLayer{eth, ipLayer(cli, srv, layers.IPProtocolICMPv4).(gopacket.SerializableLayer),
			&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(packet.ICMPDestUnreachable, 4), Seq: mtu}, gopacket.Payload(quote)}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := ipLayer(cli, srv, layers.IPProtocolICMPv6)
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(packet.ICMPv6PacketTooBig, 0)}
		ic.SetNetworkLayerForChecksum(ip)
		ls = []gopacket.SerializableLayer{eth, ip.(gopacket.SerializableLayer), ic,
			gopacket.Payload(append([]byte{0, 0, byte(mtu >> 8), byte(mtu)}, quote...))}
	}
	return serialize(t, ls...)
}
