package protect

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/packet"
)

// TestSetWorkers: the Inspector sized to the gate's queue count inspects
// every worker's frames (beyond the default 64 too); a worker beyond the
// size passes uninspected only counted and logged, once.
func TestSetWorkers(t *testing.T) {
	var logs bytes.Buffer
	cfg := baseConfig(ModeMitigate)
	i, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if i.Workers() != defaultWorkers {
		t.Fatalf("default workers %d, want %d", i.Workers(), defaultWorkers)
	}
	for _, n := range []int{0, -1, maxWorkers + 1} {
		if err := i.SetWorkers(n); err == nil {
			t.Errorf("SetWorkers(%d) accepted", n)
		}
	}
	const queues = 100
	if err := i.SetWorkers(queues); err != nil || i.Workers() != queues {
		t.Fatalf("SetWorkers(%d) = %v, sized %d", queues, err, i.Workers())
	}
	// An out-of-state ACK: mitigate drops it, on the last worker too.
	ack := func() []engine.Packet {
		f := tseg{src: cli4, dst: srv4, sport: 40000, dport: 80, seq: 1, ack: 1, flags: packet.ACK, win: 100, ws: -1}.frame()
		return []engine.Packet{{Data: f, Len: uint32(len(f)), Verdict: engine.Forward}}
	}
	pk := ack()
	i.Inspect(queues-1, engine.Outer, pk)
	if pk[0].Verdict != engine.Drop {
		t.Fatalf("worker %d: out-of-state ACK verdict %v, want drop (inspected)", queues-1, pk[0].Verdict)
	}
	if n := i.Stats().Bypass["worker_out_of_range"]; n != 0 {
		t.Fatalf("bypass counted %d for a worker in range", n)
	}

	for range 3 {
		pk = ack()
		i.Inspect(queues, engine.Outer, pk)
		if pk[0].Verdict != engine.Forward {
			t.Fatalf("out-of-range worker: verdict %v", pk[0].Verdict)
		}
	}
	if n := i.Stats().Bypass["worker_out_of_range"]; n != 3 {
		t.Fatalf("uninspected frames counted %d, want 3", n)
	}
	if n := strings.Count(logs.String(), "UNINSPECTED"); n != 1 {
		t.Fatalf("out-of-range logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestExtraSurvivesSetWorkers: the daemon sizes the Inspector after the
// engine handed it the workers' spare frames; the window updates still go.
func TestExtraSurvivesSetWorkers(t *testing.T) {
	i, _ := newTestInspector(t, baseConfig(ModeMitigate)) // 4 workers
	x := extraOf(i)
	if err := i.SetWorkers(2); err != nil {
		t.Fatal(err)
	}
	cookie := parsed(t, run(i, engine.Outer, synFrom(cli4, 1234, 77).frame())).TCP.Seq
	run(i, engine.Outer, tseg{src: cli4, dst: srv4, sport: 1234, dport: 80, seq: 78, ack: cookie + 1, flags: packet.ACK, win: 100, ws: -1}.frame())
	sa := tseg{src: srv4, dst: cli4, sport: 80, dport: 1234, seq: 5000, ack: 78, flags: packet.SYN | packet.ACK, win: 65160,
		mss: 1460, ws: 7, sack: true, fromServer: true}
	if v := run(i, engine.Inner, sa.frame()).Verdict; v != engine.Bounce {
		t.Fatalf("server SYN-ACK: %v", v)
	}
	if st := i.Stats(); st.Proxy["window_update"] != 1 || x.n != 1 {
		t.Fatalf("%+v, %d sent", st.Proxy, x.n)
	}
}
