package protect

import (
	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/flow"
	"github.com/xskgate/xskgate/internal/packet"
)

// chunk is how many packets of a batch are parsed and their flows
// prefetched before the first of them is inspected: enough for the
// prefetches to arrive, few enough that their lines stay in L1.
const chunk = 64

// prepare parses pkts and fills the segments of those with a TCP header,
// then has the flow table compute their keys and prefetch their entries.
// A segment is filled here for every TCP header, as inbound and outbound
// would fill it; the others are cleared, so Prepare skips them.
func (i *Inspector) prepare(w *workerState, dir flow.Dir, pkts []engine.Packet) {
	for k := range pkts {
		p := &w.pkts[k]
		w.perr[k] = p.Parse(pkts[k].Data)
		if w.perr[k] == nil && p.IPVersion != 0 && p.Proto == packet.ProtoTCP && p.L4Off >= 0 {
			i.fillSegment(&w.segs[k], p, dir)
		} else {
			w.segs[k] = flow.Segment{}
		}
	}
	i.table.Prepare(w.segs[:len(pkts)], w.preps[:len(pkts)])
}

// fillSegment is the tracker's view of a parsed TCP packet.
func (i *Inspector) fillSegment(s *flow.Segment, p *packet.Packet, dir flow.Dir) {
	t := &p.TCP
	*s = flow.Segment{
		Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort,
		Flags: t.Flags, Seq: t.Seq, Ack: t.Ack, Window: t.Window, WScale: -1,
		SACKPerm: t.Opts.Has&packet.HasSACKPerm != 0, PayloadLen: uint32(p.PayloadLen), Dir: dir,
	}
	if t.Opts.Has&packet.HasWScale != 0 {
		s.WScale = int8(min(t.Opts.WScale, 14))
	}
}
