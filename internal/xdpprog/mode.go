package xdpprog

import (
	"fmt"
	"strings"

	"github.com/cilium/ebpf/link"
)

// Mode selects the XDP hook the program is attached to.
type Mode int

const (
	// ModeNative attaches in the driver's receive path (XDP_FLAGS_DRV_MODE).
	// veth supports it.
	ModeNative Mode = iota
	// ModeGeneric attaches after SKB allocation (XDP_FLAGS_SKB_MODE). It
	// works on every interface and is slower.
	ModeGeneric
)

// ParseMode parses "native" (also "driver", "drv") or "generic" (also "skb").
func ParseMode(s string) (Mode, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "native", "driver", "drv":
		return ModeNative, nil
	case "generic", "skb":
		return ModeGeneric, nil
	}
	return 0, fmt.Errorf("parse xdp mode %q: want native or generic", s)
}

// String returns "native" or "generic".
func (m Mode) String() string {
	switch m {
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

func (m Mode) flags() (link.XDPAttachFlags, error) {
	switch m {
	case ModeNative:
		return link.XDPDriverMode, nil
	case ModeGeneric:
		return link.XDPGenericMode, nil
	}
	return 0, fmt.Errorf("unknown xdp mode %d", int(m))
}
