package xsk_test

import (
	"os"
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/lab"
	"github.com/xskgate/xskgate/internal/xsk"
)

// TestSocketOptions: the options set and read with x/sys/unix's helpers
// (ring sizes, XDP_MAX_TX_SKB_BUDGET, XDP_OPTIONS, the shared-UMEM bind)
// do what they did as raw syscalls: the budget is granted or refused with
// the range in the message, a shared socket binds, and both read copy mode
// on a veth.
func TestSocketOptions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (AF_XDP sockets in a lab): run the tests as root")
	}
	l := lab.ForTest(t, lab.Config{Queues: 1})
	err := l.Do(l.GateNS, func() error {
		u, err := xsk.NewUmem(xsk.UmemConfig{NumFrames: 512, FillSize: 256, CompSize: 256})
		if err != nil {
			return err
		}
		defer u.Close()
		for _, tc := range []struct {
			budget uint32
			want   string
		}{{16, "set tx budget 16 (must be in [32, tx ring size 256])"}, {512, "set tx budget 512"}} {
			_, err := u.Open(xsk.SocketConfig{Ifindex: l.OuterIndex, RxSize: 256, TxSize: 256, TxBudget: tc.budget})
			if err == nil {
				t.Skipf("the kernel took tx budget %d: it has no XDP_MAX_TX_SKB_BUDGET (Linux 6.17+), which ignores budgets", tc.budget)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("budget %d: %v, want %q", tc.budget, err, tc.want)
			}
		}
		o, err := u.Open(xsk.SocketConfig{Ifindex: l.OuterIndex, RxSize: 256, TxSize: 256, TxBudget: 64})
		if err != nil {
			return err
		}
		if o.TxBatch() != 64 {
			t.Errorf("TxBatch %d after asking 64", o.TxBatch())
		}
		i, err := u.Open(xsk.SocketConfig{Ifindex: l.InnerIndex, RxSize: 256, TxSize: 256})
		if err != nil {
			return err
		}
		if i.TxBatch() != 32 {
			t.Errorf("TxBatch %d without a budget, want the kernel's 32", i.TxBatch())
		}
		for _, s := range []*xsk.Socket{o, i} {
			opt, err := s.Options()
			if err != nil || opt.ZeroCopy {
				t.Errorf("%s: options %+v, %v: want copy mode on a veth", s.Ifname(), opt, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
