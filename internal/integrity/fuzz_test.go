package integrity

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/kmodel"
	"github.com/xskgate/xskgate/internal/xsk"
)

// FuzzChecker drives the engine, with every check on, over kernel-model
// ports one step at a time, in an order the input chooses: which port's
// NAPI polls, how many frames arrive where, when each worker iterates, ring
// and batch sizes, frame lengths, what the Inspector drops or bounces. No
// goroutine and no clock take part (engine.Worker.Step, kmodel.Port.Poll
// and Kick on this goroutine), so an input replays exactly. A fault-free
// kernel model must give zero violations and a balanced account of every
// frame: delivered once, at the port its verdict names, or dropped by the
// Inspector, by the engine for a full TX ring, or by the model's kernel
// (counted). TestCheckerOracle shows the same oracle fails on injected
// faults.
func FuzzChecker(f *testing.F) {
	for _, s := range checkerSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := newStepRig(in, kmodel.Faults{})
		if err != nil {
			t.Skip(err) // an input the engine refuses to build from
		}
		defer r.close()
		r.run()
		if problems := r.verify(); len(problems) > 0 {
			t.Fatalf("%s\n%s", r.desc, join(problems))
		}
	})
}

// checkerSeeds are the in-code seeds; testdata/fuzz/FuzzChecker holds more.
var checkerSeeds = [][]byte{
	// One queue, meta record, ring 256, batch 32, 512 frames, 60 to 1514
	// bytes: bursts both ways, each followed by its poll and a step.
	{0x00, 0x04, 0x1f, 0x03, 0x09, 0x01, 0x00, 0x00, 0x3f, 0x1f, 0x02,
		0xf8, 0x04, 0x06, 0xf9, 0x05, 0x06, 0xf8, 0xf9, 0x04, 0x05, 0x04, 0x06, 0x06, 0x07},
	// Two queues, head record, ring 16, batch 4: traffic both ways on both
	// queues, 3/8 dropped and 2/8 bounced, a TX budget of 4 and a backlog
	// of 32, so TX, COMPLETION and the backlog fill up.
	{0x03, 0x00, 0x03, 0x00, 0x0a, 0x11, 0x0b, 0x00, 0x07, 0x03, 0x01,
		0xf8, 0xf9, 0xfa, 0xfb, 0x04, 0x0c, 0x05, 0x0d, 0x06, 0x0e, 0x04, 0x0c, 0x06, 0x0e, 0x05, 0x0d, 0x3e, 0x07},
	// No record, poison on, headroom 128, 1000 to 1800 bytes (over the
	// chunk: kernel drops), XDP program drops 1/5, NAPI budget 4, TX 2.
	{0x1c, 0x03, 0x3f, 0x02, 0x0f, 0x05, 0x04, 0x02, 0x03, 0x01, 0x01,
		0xf8, 0x04, 0x04, 0x06, 0xf9, 0x05, 0x05, 0x06, 0x04, 0x05, 0x06, 0x07},
	// No Prime: frames arrive before anything is posted to FILL, and the
	// kernel drops them, counted.
	{0x20, 0x01, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3f, 0x1f, 0x02,
		0x50, 0x04, 0x06, 0x50, 0x04, 0x06, 0x07},
}

// TestCheckerReplay runs each seed twice: the same input gives the same
// outcome, down to every counter.
func TestCheckerReplay(t *testing.T) {
	for i, in := range checkerSeeds {
		var got [2]stepOutcome
		for k := range got {
			r, err := newStepRig(in, kmodel.Faults{})
			if err != nil {
				t.Fatalf("seed %d: %v", i, err)
			}
			r.run()
			if p := r.verify(); len(p) > 0 {
				t.Fatalf("seed %d (%s):\n%s", i, r.desc, join(p))
			}
			got[k] = r.outcome()
			r.close()
		}
		if got[0] != got[1] {
			t.Fatalf("seed %d does not replay:\n%+v\n%+v", i, got[0], got[1])
		}
		if got[0].Sent == 0 {
			t.Fatalf("seed %d sent nothing", i)
		}
	}
}

// TestCheckerOracle injects each fault of the kernel model into an input
// that is clean without it: the fuzzer's oracle must report it.
func TestCheckerOracle(t *testing.T) {
	// One queue, meta record, ring 256, batch 32: many bursts, polls and
	// steps, so every fault finds frames (and two in a poll for the veth
	// race).
	in := []byte{0x00, 0x04, 0x1f, 0x01, 0x01, 0x09, 0x00, 0x00, 0x3f, 0x1f, 0x02}
	for range 40 {
		in = append(in, 0xf8, 0x04, 0x06, 0xf9, 0x05, 0x06)
	}
	in = append(in, 0x07)
	if r, err := newStepRig(in, kmodel.Faults{}); err != nil {
		t.Fatal(err)
	} else {
		r.run()
		if p := r.verify(); len(p) > 0 {
			t.Fatalf("clean run: %s", join(p))
		}
		r.close()
	}
	for _, tt := range []struct {
		name string
		f    kmodel.Faults
	}{
		{"veth-race", kmodel.Faults{VethRace: 0.2}},
		{"duplicate", kmodel.Faults{Duplicate: 0.2}},
		{"drop", kmodel.Faults{Drop: 0.2}},
		{"wrong-length", kmodel.Faults{WrongLength: 0.2}},
		{"bad-addr", kmodel.Faults{BadAddr: 0.2}},
		{"skip-fill", kmodel.Faults{SkipFill: 0.2}},
		{"spurious-completion", kmodel.Faults{SpuriousCompletion: 0.2}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.f.Seed, tt.f.Limit = 7, 1
			r, err := newStepRig(in, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			defer r.close()
			r.run()
			inj := 0
			for _, p := range r.ports() {
				inj += len(p.Injected())
			}
			if inj == 0 {
				t.Fatal("no fault injected: the input gives it no chance")
			}
			p := r.verify()
			if len(p) == 0 {
				t.Fatalf("%d injected, oracle saw nothing", inj)
			}
			t.Logf("%d injected; oracle: %s", inj, p[0])
		})
	}
}

// stepRig is the gate of harness_test.go without goroutines: the test is
// the kernel (Deliver, Poll; TX runs inside the worker's Kick) and calls
// each worker's Step itself.
type stepRig struct {
	desc         string
	in           []byte
	traffic      kmodel.Traffic
	checks       *Checks
	e            *engine.Engine
	outer, inner []*kmodel.Port
	sinks        [2]*kmodel.Sink // by engine.Side: what leaves that side
	insp         *fateInspector
	buf          []byte
	sent         uint64
	refused      uint64 // Deliver refused: the backlog was full, never sent
	steps        uint64
	stuck        bool
}

// Fates of a frame as the Inspector decided them.
const (
	fateUnseen uint8 = iota
	fateDrop
	fateOuter // transmitted on the outer side
	fateInner
	fateTwice // seen by the Inspector more than once
)

// fateInspector drops or bounces frames by a hash of their sequence number
// and records each decision by sequence number.
type fateInspector struct {
	dropEighths, bounceEighths uint64
	salt                       uint64
	fate                       []uint8
	drops                      uint64
	bad                        uint64 // frames that are not the Traffic's
}

func (p *fateInspector) Inspect(_ int, from engine.Side, pkts []engine.Packet) {
	for i := range pkts {
		pk := &pkts[i]
		if pk.Len < kmodel.MinFrameLen {
			p.bad++
			continue
		}
		seq := binary.BigEndian.Uint64(pk.Data[kmodel.MinFrameLen-8:])
		if seq > 1<<24 {
			p.bad++
			continue
		}
		for uint64(len(p.fate)) <= seq {
			p.fate = append(p.fate, fateUnseen)
		}
		h := (seq*0x9e3779b97f4a7c15 ^ p.salt) >> 61 // 0..7
		fate := fateOuter + uint8(from.Other())
		switch {
		case h < p.dropEighths:
			pk.Verdict, fate = engine.Drop, fateDrop
			p.drops++
		case h < p.dropEighths+p.bounceEighths:
			pk.Verdict, fate = engine.Bounce, fateOuter+uint8(from)
		}
		if p.fate[seq] != fateUnseen {
			fate = fateTwice
		}
		p.fate[seq] = fate
	}
}

// byteReader hands out the input a byte at a time, zeros once it is used up.
type byteReader struct {
	b []byte
	i int
}

func (r *byteReader) next() byte {
	if r.i >= len(r.b) {
		return 0
	}
	r.i++
	return r.b[r.i-1]
}

func (r *byteReader) more() bool { return r.i < len(r.b) }

const (
	stepFrameSize = 2048
	maxStepOps    = 2048   // input bytes read as operations
	maxStepFrames = 50_000 // frames sent, all operations together
)

// newStepRig builds the gate an input's first 11 bytes describe.
func newStepRig(in []byte, faults kmodel.Faults) (*stepRig, error) {
	br := &byteReader{b: in}
	b0 := br.next()
	queues := 1 + int(b0&1)
	record := kmodel.Record((b0 >> 1 & 3) % 3)
	poison := b0&8 != 0
	headroom := uint32(b0>>4&1) * 128
	prime := b0&0x20 == 0
	ring := uint32(16) << (br.next() % 7) // 16 .. 1024
	batch := 1 + int(br.next()%64)
	share := max(4*batch, []int{0, int(ring) / 2, int(ring), 2 * int(ring)}[br.next()%4])
	lb := br.next()
	minLen := []int{0, 60, 200, 1000}[lb%4]
	maxLen := max(minLen, []int{0, 128, 1514, 1800}[lb>>2%4]) // 1800: over a 2048-byte chunk with headroom and record
	traffic := kmodel.Traffic{Seed: uint64(br.next()), MinLen: minLen, MaxLen: maxLen}
	ib := br.next()
	insp := &fateInspector{dropEighths: uint64(ib & 3), bounceEighths: uint64(ib >> 2 & 3), salt: uint64(ib) << 32}
	xdpDrop := []float64{0, 0.05, 0.2, 0.5}[br.next()%4]
	napi := 1 + int(br.next()%64)
	txBudget := 1 + uint32(br.next()%32)
	backlog := []int{4, 32, 256, 1024}[br.next()%4]
	r := &stepRig{in: in[br.i:], traffic: traffic, insp: insp, buf: make([]byte, 4096),
		sinks: [2]*kmodel.Sink{kmodel.NewSink(traffic), kmodel.NewSink(traffic)}}
	r.desc = fmt.Sprintf("queues %d record %d poison %v headroom %d prime %v ring %d batch %d share %d traffic %+v drop %d/8 bounce %d/8 xdpdrop %v napi %d tx %d backlog %d",
		queues, record, poison, headroom, prime, ring, batch, share, traffic, insp.dropEighths, insp.bounceEighths, xdpDrop, napi, txBudget, backlog)

	frames := uint32(share * queues)
	area := make([]byte, int(frames)*stepFrameSize)
	u, err := xsk.UmemOn(area, xsk.UmemConfig{FrameSize: stepFrameSize, NumFrames: frames, Headroom: headroom})
	if err != nil {
		return nil, err
	}
	cfg := DefaultConfig()
	cfg.RxOffset = u.RxOffset()
	cfg.Carrier = carrierOf(record)
	cfg.RecorderSize = 64
	cfg.Logger = quietLogger()
	if r.checks, err = New(u, cfg); err != nil {
		return nil, err
	}
	var pairs []engine.Pair
	for q := range queues {
		mk := func(name string, side engine.Side) (*kmodel.Port, error) {
			p, err := kmodel.NewPort(kmodel.Config{Umem: area, FrameSize: stepFrameSize, Headroom: headroom, Ifname: name, Queue: q,
				FillSize: ring, CompSize: ring, RxSize: ring, TxSize: ring, Record: record,
				NapiBudget: napi, TxBudget: txBudget, Backlog: backlog, XDPDrop: xdpDrop, Faults: faults})
			if err != nil {
				return nil, err
			}
			p.SetPeer(r.sinks[side])
			_, comp, rx, _ := p.Rings()
			rx.SetPoison(poison)
			comp.SetPoison(poison)
			return p, nil
		}
		out, err := mk("outer", engine.Outer)
		if err != nil {
			r.close()
			return nil, err
		}
		r.outer = append(r.outer, out)
		in, err := mk("inner", engine.Inner)
		if err != nil {
			r.close()
			return nil, err
		}
		r.inner = append(r.inner, in)
		pairs = append(pairs, engine.Pair{Outer: out, Inner: in})
	}
	ecfg := engine.Config{Batch: batch, Carrier: carrierOf(record), Inspector: insp, Logger: quietLogger(),
		NewChecker: r.checks.NewChecker}
	if r.e, err = engine.New(u, pairs, ecfg); err != nil {
		r.close()
		return nil, err
	}
	if prime {
		r.e.Prime()
	}
	return r, nil
}

func (r *stepRig) ports() []*kmodel.Port {
	return append(append([]*kmodel.Port(nil), r.outer...), r.inner...)
}

func (r *stepRig) close() {
	r.checks.Close()
	for _, p := range r.ports() {
		p.Close()
	}
}

// run plays the operations, then drains. An operation is a byte: the low
// three bits say what, the rest how much or which queue.
//
//	0-3  deliver 1 + 2*arg frames to queue kind>>1, outer (even) or inner (odd)
//	4    NAPI poll of outer port arg%queues
//	5    NAPI poll of inner port arg%queues
//	6    worker arg%queues iterates 1 + arg>>1 times
//	7    drain everything
func (r *stepRig) run() {
	br := &byteReader{b: r.in}
	nq := len(r.outer)
	for ops := 0; br.more() && ops < maxStepOps; ops++ {
		op := br.next()
		kind, arg := op&7, int(op>>3)
		switch {
		case kind < 4:
			p := r.outer[int(kind>>1)%nq]
			if kind&1 != 0 {
				p = r.inner[int(kind>>1)%nq]
			}
			r.deliver(p, 1+2*arg)
		case kind == 4:
			r.outer[arg%nq].Poll()
		case kind == 5:
			r.inner[arg%nq].Poll()
		case kind == 6:
			for range 1 + arg>>1 {
				r.step(arg % nq)
			}
		default:
			r.drain()
		}
	}
	r.drain()
}

func (r *stepRig) deliver(p *kmodel.Port, n int) {
	for range n {
		if r.sent >= maxStepFrames {
			return
		}
		if p.Deliver(r.traffic.Frame(r.buf, r.sent)) {
			r.sent++
		} else {
			r.refused++ // never entered: the same sequence number goes next
		}
	}
}

func (r *stepRig) step(q int) int {
	r.steps++
	n, err := r.e.Workers()[q].Step()
	if err != nil {
		panic(fmt.Sprintf("worker %d: %v", q, err)) // the engine's own contract broke
	}
	return n
}

// drain polls and steps until two rounds in a row move nothing. A run that
// does not settle within a generous bound is reported by verify.
func (r *stepRig) drain() {
	idle := 0
	for range 100_000 {
		work := 0
		for _, p := range r.ports() {
			work += p.Poll()
		}
		for q := range r.outer {
			work += r.step(q)
		}
		if work > 0 {
			idle = 0
		} else if idle++; idle == 2 {
			return
		}
	}
	r.stuck = true
}

// verify is the oracle: what a fault-free run must satisfy.
func (r *stepRig) verify() []string {
	var p []string
	add := func(format string, a ...any) { p = append(p, fmt.Sprintf(format, a...)) }
	if r.stuck {
		add("the gate never settled")
	}
	if vs := r.checks.Violations(); len(vs) > 0 {
		add("%d violations, first: %v", len(vs), vs[0])
	}
	if c := r.checks.Counts(); c != ([NumClasses]uint64{}) {
		add("violation counts %v", c)
	}
	if r.insp.bad > 0 {
		add("the Inspector saw %d frames that are not the traffic's", r.insp.bad)
	}
	var kernel, txFull, verdict uint64
	for _, port := range r.ports() {
		st, _ := port.Stats()
		c := port.Counters()
		kernel += st.RxDropped + st.RxRingFull + c.XDPDrops
		if c.TxPeerDrops != 0 {
			add("%s: %d TX peer drops, the sinks refuse nothing", port.Ifname(), c.TxPeerDrops)
		}
	}
	for _, w := range r.e.Workers() {
		for s := range w.Stats {
			for why := range engine.NumDropReasons {
				n := w.Stats[s].Drops[why].Load()
				switch why {
				case engine.DropVerdict:
					verdict += n
				case engine.DropTxRingFull:
					txFull += n
				default:
					if n > 0 {
						add("worker %d side %d: %d drops for %v", w.ID(), s, n, why)
					}
				}
			}
		}
		if a := w.Accounting(); !a.Balanced() || a.Quarantined != 0 || a.Tx != 0 {
			add("worker %d accounting %+v after the drain", w.ID(), a)
		}
	}
	if verdict != r.insp.drops {
		add("engine counted %d verdict drops, the Inspector made %d", verdict, r.insp.drops)
	}
	// Frame by frame: delivered once, where its verdict sent it.
	var unseen, undelivered uint64
	for seq := range r.sent {
		fate := fateUnseen
		if seq < uint64(len(r.insp.fate)) {
			fate = r.insp.fate[seq]
		}
		at := [2]bool{r.sinks[0].Has(seq), r.sinks[1].Has(seq)}
		switch fate {
		case fateUnseen:
			unseen++
			if at[0] || at[1] {
				add("frame %d delivered without the Inspector seeing it", seq)
			}
		case fateDrop:
			if at[0] || at[1] {
				add("frame %d delivered after a drop verdict", seq)
			}
		case fateOuter, fateInner:
			want := engine.Side(fate - fateOuter)
			if at[want.Other()] {
				add("frame %d left on the %v side, its verdict said %v", seq, want.Other(), want)
			}
			if !at[want] {
				undelivered++
			}
		default:
			add("frame %d inspected twice", seq)
		}
		if len(p) > 20 {
			return append(p, "...")
		}
	}
	if unseen != kernel {
		add("%d frames never reached the Inspector, the model's kernel dropped %d", unseen, kernel)
	}
	if undelivered != txFull {
		add("%d forwarded frames never arrived, the engine dropped %d for a full TX ring", undelivered, txFull)
	}
	for s, sk := range r.sinks {
		if st := sk.Stats(); st.Duplicates != 0 || st.Malformed != 0 {
			add("sink %d: %+v, first error %v", s, st, sk.Err())
		}
	}
	return p
}

// stepOutcome is what a run left behind, for comparing replays.
type stepOutcome struct {
	Sent, Refused, Steps, InspDrops uint64
	Sinks                           [2]kmodel.SinkStats
	Kernel                          [4]xsk.Statistics
	Counters                        [4]kmodel.Counters
	Acct                            engine.Accounting
}

func (r *stepRig) outcome() stepOutcome {
	o := stepOutcome{Sent: r.sent, Refused: r.refused, Steps: r.steps, InspDrops: r.insp.drops,
		Sinks: [2]kmodel.SinkStats{r.sinks[0].Stats(), r.sinks[1].Stats()}, Acct: r.e.Accounting()}
	for i, p := range r.ports() {
		o.Kernel[i], _ = p.Stats()
		o.Counters[i] = p.Counters()
	}
	return o
}

func join(p []string) string {
	s := ""
	for _, l := range p {
		s += "  " + l + "\n"
	}
	return s
}
