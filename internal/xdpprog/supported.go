package xdpprog

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// Supported reports whether the running kernel has what the program truly
// needs: the XDP program type, the XSKMAP map type and the
// bpf_redirect_map helper for XDP. How the record reaches user space is
// optional and chosen by ChooseCarrier. The error names the first missing
// piece, or the missing privilege if the probes themselves are refused.
func Supported() error {
	probes := []struct {
		what  string
		probe func() error
	}{
		{"XDP program type", func() error { return features.HaveProgramType(ebpf.XDP) }},
		{"XSKMAP map type", func() error { return features.HaveMapType(ebpf.XSKMap) }},
		{"bpf_redirect_map helper", func() error { return features.HaveProgramHelper(ebpf.XDP, asm.FnRedirectMap) }},
	}
	for _, p := range probes {
		err := p.probe()
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			return fmt.Errorf("xdp support: kernel lacks the %s: %w", p.what, err)
		case isPerm(err):
			return &hintError{msg: fmt.Sprintf("xdp support: probing the %s: permission denied (%s): %s", p.what, errnoName(err), privHint), err: err}
		default:
			return fmt.Errorf("xdp support: probing the %s: %w", p.what, err)
		}
	}
	return nil
}
