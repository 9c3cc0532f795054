package protect

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xskgate/xskgate/internal/engine"
)

// synFlood runs n distinct first SYNs (source port and ISN vary) toward
// srv4 through i in batches, advancing clk by each's share of d: a flood
// of n/d SYNs per second that the retransmit action drops and records.
func synFloodInto(i *Inspector, clk *fakeClock, n int, d time.Duration) {
	const batch = 64
	tmpl := synFrom(cli4, 1, 1)
	tmpl.src = netipFrom4(198, 19, 200, 1)
	orig := tmpl.frame()
	bufs := make([][]byte, batch)
	for k := range bufs {
		bufs[k] = make([]byte, len(orig), 2048)
	}
	pkts := make([]engine.Packet, batch)
	step := d / time.Duration(n)
	for k := 0; k < n; k += batch {
		m := min(batch, n-k)
		for j := range m {
			f := bufs[j]
			copy(f, orig)
			x := uint32(k + j)
			binary.BigEndian.PutUint16(f[14+20:], uint16(x)|1024)
			binary.BigEndian.PutUint32(f[14+20+4:], x*2654435761)
			pkts[j] = engine.Packet{Data: f, Len: uint32(len(f)), Verdict: engine.Forward}
		}
		i.Inspect(0, engine.Outer, pkts[:m])
		clk.advance(step * time.Duration(m))
	}
}

// TestRetransmitUnderFlood: a legitimate client's first SYN, dropped by
// the retransmit action just before a flood of a million distinct SYNs in
// one second (1 Mpps, as long as a client's initial RTO), is still
// remembered when its retransmission comes: the client connects on its
// first retry. (The old 64K-slot direct-mapped table lost it after about
// 65 ms of such a flood.)
func TestRetransmitUnderFlood(t *testing.T) {
	c := baseConfig(ModeMitigate)
	c.Rules[0].SynFlood = SynFloodRule{Rate: 0, Action: ActionRetransmit}
	i, clk := newTestInspector(t, c)
	legit := synFrom(cli4, 5555, 42)
	if v := run(i, engine.Outer, legit.frame()).Verdict; v != engine.Drop {
		t.Fatalf("first SYN: %v", v)
	}
	synFloodInto(i, clk, 1_000_000, time.Second)
	if v := run(i, engine.Outer, legit.frame()).Verdict; v != engine.Forward {
		t.Fatalf("retransmission after a flood of 1M first SYNs in 1 s: %v", v)
	}
	if st := i.Stats(); st.Count("retransmit_passed", "pass", "pass") != 1 {
		t.Fatalf("%+v", st.Decisions)
	}
}

func netipFrom4(a, b, c, d byte) netip.Addr { return netip.AddrFrom4([4]byte{a, b, c, d}) }

// TestRetransmitTableFull: a table far smaller than the flood (1024
// entries, 100 000 first SYNs in 1 s) fills with entries still in their
// window; those are never overwritten, so the legitimate SYN recorded
// before the flood still matches, and the SYNs that found no room are
// counted. Once the flood's entries are past every rule's window the room
// is back: a new client's first SYN is recorded and its retry admitted.
func TestRetransmitTableFull(t *testing.T) {
	c := baseConfig(ModeMitigate)
	c.Rules[0].SynFlood = SynFloodRule{Rate: 0, Action: ActionRetransmit}
	clk := &fakeClock{}
	clk.ns.Store(int64(100 * time.Second))
	i, err := New(c, Options{Workers: 1, FlowCapacity: 4096, Clock: clk.now, RetransmitCapacity: 1024})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(i.retrans.Load().slots); n != 1024 {
		t.Fatalf("%d slots for a capacity of 1024", n)
	}
	legit := synFrom(cli4, 5555, 42)
	if v := run(i, engine.Outer, legit.frame()).Verdict; v != engine.Drop {
		t.Fatalf("first SYN: %v", v)
	}
	const n = 100_000
	synFloodInto(i, clk, n, time.Second)
	if v := run(i, engine.Outer, legit.frame()).Verdict; v != engine.Forward {
		t.Fatalf("retransmission after the table filled: %v", v)
	}
	st := i.Stats().Retrans
	t.Logf("%+v", st)
	// Every slot but the legitimate one's was free for the flood; the
	// rest of it found its bucket full.
	if st["recorded"] != 1024 || st["table_full"] != n+1-1024 || st["matched"] != 1 {
		t.Fatalf("%+v, want 1024 recorded (the legitimate SYN and 1023 of the flood), the other %d refused, 1 matched", st, n+1-1024)
	}
	// 3 s (the window) after the flood's last SYN its entries can no
	// longer match: their slots are free again.
	clk.advance(3*time.Second + time.Millisecond)
	late := synFrom(cli4, 6666, 7)
	if v := run(i, engine.Outer, late.frame()).Verdict; v != engine.Drop {
		t.Fatalf("new client's first SYN: %v", v)
	}
	clk.advance(time.Second)
	if v := run(i, engine.Outer, late.frame()).Verdict; v != engine.Forward {
		t.Fatalf("new client's retransmission: %v", v)
	}
}

// TestRetransmitTableLazy: the table's memory is spent only once a rule
// uses the retransmit action, and it survives reloads.
func TestRetransmitTableLazy(t *testing.T) {
	i, _ := newTestInspector(t, baseConfig(ModeMitigate))
	if i.retrans.Load() != nil {
		t.Fatal("table allocated without a retransmit rule")
	}
	c := baseConfig(ModeMitigate)
	c.Rules[1].SynFlood.Action = ActionRetransmit
	if err := i.Reload(c); err != nil {
		t.Fatal(err)
	}
	tb := i.retrans.Load()
	if tb == nil || len(tb.slots) != DefaultRetransmitCapacity {
		t.Fatal("no table of the default size after a reload with a retransmit rule")
	}
	if err := i.Reload(baseConfig(ModeMitigate)); err != nil || i.retrans.Load() != tb {
		t.Fatal("table replaced or dropped by a reload")
	}
}
