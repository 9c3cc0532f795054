package protect

import (
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xskgate/xskgate/internal/packet"
	"github.com/xskgate/xskgate/internal/xdpprog"
)

// TestFirstLineCookieInterop runs a SYN through the XDP first line
// (BPF_PROG_RUN) fed by an Inspector, and checks the cookie of the SYN-ACK
// it answers with the Inspector's own checkCookie: the ACK that returns it
// completes the proxy's handshake in user space exactly as if the proxy
// had made it. IPv4 and IPv6, with and without the client's options.
func TestFirstLineCookieInterop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load the XDP program")
	}
	c, _, err := xdpprog.ChooseCarrier(xdpprog.CarrierAuto)
	if err != nil {
		t.Fatal(err)
	}
	p, err := xdpprog.Load(1, xdpprog.Options{Carrier: c, FirstLine: true, Flows: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	cfg := labConfig(ModeMitigate)
	i, err := New(cfg, Options{Workers: 1, FlowCapacity: 1 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := i.SetFirstLine(p.FirstLine(), nil); err != nil {
		t.Fatal(err)
	}
	for _, sc := range []string{"198.18.0.2/32", "2001:2::2/128"} {
		if err := p.FirstLine().Set(xdpprog.Scopes, netip.MustParsePrefix(sc), xdpprog.ScopeChallenge); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name     string
		src, dst netip.Addr
		seg      tseg
		want     cookieOpts
	}{
		{"ipv4 with options", netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"),
			tseg{sport: 40000, dport: port, seq: 0xdeadbeef, flags: packet.SYN, win: 64240, mss: 1460, ws: 7, sack: true},
			cookieOpts{mssIdx: 3, wscale: 7, sack: true}},
		{"ipv4 bare", netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"),
			tseg{sport: 40001, dport: port, seq: 7, flags: packet.SYN, win: 1024, ws: -1},
			cookieOpts{mssIdx: 0, wscale: wscaleNone}},
		{"ipv6 with options", netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2"),
			tseg{sport: 40002, dport: port, seq: 99, flags: packet.SYN, win: 64240, mss: 1440, ws: 9, sack: true},
			cookieOpts{mssIdx: 2, wscale: 9, sack: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.seg
			s.src, s.dst = tc.src, tc.dst
			in := s.frame()
			out := make([]byte, len(in)+256)
			opts := &ebpf.RunOptions{Data: in, DataOut: out, Repeat: 1}
			ret, err := p.Raw().Run(opts)
			if err != nil {
				t.Fatal(err)
			}
			if ret != 3 {
				t.Fatalf("returned %d, want XDP_TX", ret)
			}
			var pk packet.Packet
			if err := pk.Parse(opts.DataOut); err != nil || pk.TCP.Flags != packet.SYN|packet.ACK {
				t.Fatalf("SYN-ACK does not parse: %v %+v", err, pk.TCP)
			}
			cookie := pk.TCP.Seq
			tp := tuple{tc.src, tc.dst, s.sport, s.dport}
			o, ok := i.key.checkCookie(&tp, s.seq, cookie, i.clock())
			if !ok || o != tc.want {
				t.Fatalf("user space says cookie %#x is valid %v with %+v, want %+v", cookie, ok, o, tc.want)
			}
		})
	}
}

// TestFirstLineUserSpaceBudget: where XDP_TX fails, XDP passes up no more
// SYNs than first_line.user_space_rate (the worker answers them all),
// never more than the challenge budget; where it works, XDP spends the
// whole challenge budget itself.
func TestFirstLineUserSpaceBudget(t *testing.T) {
	for _, tc := range []struct {
		name          string
		userRate      uint32
		noTx          bool
		wantPerSecond uint64
	}{
		{"XDP_TX works", 0, false, 200000},
		{"XDP_TX fails, default", 0, true, 20000},
		{"XDP_TX fails, set", 5000, true, 5000},
		{"XDP_TX fails, above the budget", 500000, true, 200000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(ModeMitigate)
			cfg.FirstLine.UserSpaceRate = tc.userRate
			i, _ := newTestInspector(t, cfg)
			f := &firstLine{}
			f.noTx.Store(tc.noTx)
			c := f.config(i, i.rules.Load())
			if c.CookieInUserSpace != tc.noTx || c.ChallengeInterval == 0 || uint64(1e9)/c.ChallengeInterval != tc.wantPerSecond {
				t.Fatalf("config %+v: want %d SYNs/s, cookies in user space %v", c, tc.wantPerSecond, tc.noTx)
			}
		})
	}
}
