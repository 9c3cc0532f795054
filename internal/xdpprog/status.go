package xdpprog

import "fmt"

// IDs returns the kernel's ids of the attachment's bpf_link and of the
// program it attaches, as bpftool and `ip link` show them.
func (a *Attachment) IDs() (link, prog uint32, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.link == nil {
		return 0, 0, fmt.Errorf("xdp link on ifindex %d: detached", a.ifindex)
	}
	info, err := a.link.Info()
	if err != nil {
		return 0, 0, fmt.Errorf("xdp link on ifindex %d: read info: %w", a.ifindex, err)
	}
	return uint32(info.ID), uint32(info.Program), nil
}

// Name returns the program's name as loaded (one per carrier variant).
func (p *Program) Name() string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.coll == nil || p.prog == nil {
		return ""
	}
	if info, err := p.prog.Info(); err == nil {
		return info.Name
	}
	return ""
}

// MapInfo is one of the first line's maps: its name, kind, capacity and,
// where counting is cheap, its entries (-1: not counted).
type MapInfo struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	MaxEntries uint32 `json:"max_entries"`
	Entries    int    `json:"entries"`
}

// firstLineMaps are the maps of the first line, in the order status shows
// them. The flow map is not counted here: a walk of a million entries is
// not for a status line (the Inspector counts it at each sweep).
var firstLineMaps = []struct {
	name  string
	count bool
}{
	{steerMapXskgateAllow4, true}, {steerMapXskgateAllow6, true},
	{steerMapXskgateBlock4, true}, {steerMapXskgateBlock6, true},
	{steerMapXskgateScope4, true}, {steerMapXskgateScope6, true},
	{steerMapXskgatePenalty, true}, {steerMapXskgatePassed, true}, {steerMapXskgateFlows, false},
}

// Maps describes the first line's maps.
func (f *FirstLine) Maps() (out []MapInfo, err error) {
	err = f.use(func() error {
		for _, fm := range firstLineMaps {
			m := f.m(fm.name)
			if m == nil {
				continue
			}
			mi := MapInfo{Name: fm.name, Type: m.Type().String(), MaxEntries: m.MaxEntries(), Entries: -1}
			if fm.count {
				mi.Entries = count(m)
			}
			out = append(out, mi)
		}
		return nil
	})
	return out, err
}
