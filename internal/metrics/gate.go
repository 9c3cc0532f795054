package metrics

import "github.com/xskgate/xskgate/internal/gate"

// FromGate returns a Source reading g's workers and its XDP programs.
func FromGate(g *gate.Gate) Source { return gateSource{engineSource{g.Engine}, g} }

type gateSource struct {
	engineSource
	g *gate.Gate
}

func (s gateSource) Carrier() string { c, _ := s.g.Carrier(); return c.String() }

func (s gateSource) XDPCounters() []XDPCounters {
	var out []XDPCounters
	for _, p := range s.g.ProgramCounters() {
		out = append(out, XDPCounters{Iface: p.Iface, MetaRefused: p.MetaRefused, NoHeadroom: p.NoHeadroom})
	}
	return out
}

func (s gateSource) Links() []Link {
	var out []Link
	for _, l := range s.g.Links() {
		out = append(out, Link{Side: l.Side, Ifname: l.Iface, Up: l.Up, Downs: l.Downs})
	}
	return out
}
