package gate

import (
	"fmt"
	"strings"

	"github.com/xskgate/xskgate/internal/engine"
	"github.com/xskgate/xskgate/internal/xsk"
)

// The bind mode each socket got. In auto mode the kernel tries zero-copy
// for the UMEM's first socket (outer queue 0) and falls back to copy
// silently; every socket sharing the UMEM then inherits that socket's mode
// (xp_assign_dev_shared binds it with XDP_ZEROCOPY or XDP_COPY), whatever
// its own device supports. So the mode is read back per socket
// (XDP_OPTIONS), logged, shown by status and stats, and given to the
// integrity checks, never assumed from what was asked.

// Bind modes as status and stats show them.
const (
	BindZeroCopy = "zero-copy"
	BindCopy     = "copy"
)

// bindModeOf reads s's granted mode; "" and the error when XDP_OPTIONS
// fails.
func bindModeOf(s *xsk.Socket) (string, error) {
	o, err := s.Options()
	switch {
	case err != nil:
		return "", err
	case o.ZeroCopy:
		return BindZeroCopy, nil
	}
	return BindCopy, nil
}

// readBindModes reads the mode of every socket into bindModes and logs
// them, one line per interface. It reports whether any socket got
// zero-copy, which is all the integrity checks need of it.
func (g *Gate) readBindModes() (anyZeroCopy bool) {
	for side, socks := range [2][]*xsk.Socket{g.Outer, g.Inner} {
		var zc, cp []int
		g.bindModes[side] = make([]string, len(socks))
		for i, s := range socks {
			m, _ := bindModeOf(s) // "" is shown as unknown
			g.bindModes[side][i] = m
			switch m {
			case BindZeroCopy:
				zc = append(zc, s.Queue())
			case BindCopy:
				cp = append(cp, s.Queue())
			}
		}
		anyZeroCopy = anyZeroCopy || len(zc) > 0
		iface := [2]string{g.cfg.Outer, g.cfg.Inner}[side]
		g.log.Info("AF_XDP bind mode granted", "side", engine.Side(side).String(), "iface", iface,
			"asked", g.cfg.Umem.Mode.String(), "zero_copy_queues", zc, "copy_queues", cp)
	}
	return anyZeroCopy
}

// BindMode returns the mode the kernel granted the socket of side s and
// queue q: BindZeroCopy, BindCopy, or "" if unknown.
func (g *Gate) BindMode(s engine.Side, q int) string {
	if int(s) >= len(g.bindModes) || q < 0 || q >= len(g.bindModes[s]) {
		return ""
	}
	return g.bindModes[s][q]
}

// checksumMode says who completes the partial checksums of frames sent by
// neighbours with checksum offload (engine/checksum.go), and why.
func (g *Gate) checksumMode() (mode, why string) {
	switch {
	case g.cfg.Engine.NoChecksumCompletion:
		return "left alone", "checksum completion off"
	case g.cfg.SoftwareChecksums:
		return "software", "asked"
	case g.Umem.TxMetadataLen() == 0:
		return "software", "kernel refuses AF_XDP TX metadata (XDP_UMEM_TX_METADATA_LEN, Linux 6.11+)"
	}
	// The engine asks each socket (xsk.Socket.TxChecksum); with the
	// metadata area there, only zero-copy sockets say no, and their modes
	// were read at start.
	var sw []string
	for side, modes := range g.bindModes {
		for q, m := range modes {
			if m == BindZeroCopy {
				sw = append(sw, fmt.Sprintf("%s q%d", engine.Side(side), q))
			}
		}
	}
	if len(sw) == 0 {
		return "kernel at TX", "AF_XDP TX metadata, copy mode"
	}
	return "kernel at TX, software on zero-copy sockets", "zero-copy: " + strings.Join(sw, ", ")
}

// logTxChecksum logs checksumMode once, at start.
func (g *Gate) logTxChecksum() {
	mode, why := g.checksumMode()
	g.log.Info("partial checksums: "+mode, "why", why)
}
