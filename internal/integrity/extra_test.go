package integrity

import (
	"sync/atomic"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
)

// answerer forwards every frame and answers every third one from outer
// with a frame of its own out of outer (a spare frame, engine.Extra), as
// the SYN proxy's window update does: the checks must let a free frame go
// on TX exactly when it was taken for an Extra frame.
type answerer struct {
	extras [4]engine.Extra
	n      uint64 // frames seen, worker 0 only
	sent   atomic.Uint64
}

func (a *answerer) UseExtra(worker int, x engine.Extra) { a.extras[worker] = x }

func (a *answerer) Inspect(worker int, from engine.Side, pkts []engine.Packet) {
	x := a.extras[worker]
	if from != engine.Outer || x == nil {
		return
	}
	for k := range pkts {
		if a.n++; a.n%3 != 0 {
			continue
		}
		if buf := x.Frame(engine.Outer); buf != nil && x.Send(copy(buf[:min(54, cap(buf))], pkts[k].Data)) {
			a.sent.Add(1)
		}
	}
}

// TestExtraChecked: Extra frames pass every check (free or completed
// chunk -> spare -> TX -> completed), forwarded frames still arrive, and
// nothing is reported, quarantined or lost.
func TestExtraChecked(t *testing.T) {
	const frames = 20_000
	a := &answerer{}
	g := newGate(t, gateOpts{ecfg: engine.Config{Inspector: a}, traffic: kmodel.Traffic{Seed: 4, MinLen: 60, MaxLen: 1500}})
	g.send(t, frames)
	g.settleAll(t, frames)
	g.stop(t)
	g.clean(t, frames)
	st := &g.e.Workers()[0].Stats[engine.Outer]
	if a.sent.Load() == 0 || st.ExtraSent.Load() != a.sent.Load() {
		t.Fatalf("%d extra frames sent, engine counted %d", a.sent.Load(), st.ExtraSent.Load())
	}
	t.Logf("%d extra frames among %d forwarded", a.sent.Load(), frames)
}
