package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/xskgate/xskgate/internal/xdpprog"
	"github.com/xskgate/xskgate/internal/xsk"
)

// buildVersion is what the binary knows of its own build: the module
// version (a tag, a pseudo-version from the VCS, or "(devel)"), the
// commit, and the Go toolchain.
type buildVersion struct {
	Module, Version     string
	Commit, Time        string
	Modified, HaveVCS   bool
	GoVersion, OS, Arch string
}

func readBuildVersion() buildVersion {
	v := buildVersion{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Version: "unknown"}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Module, v.Version = bi.Main.Path, bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit, v.HaveVCS = s.Value, true
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

// String is the one-line version the daemon logs and status shows.
func (v buildVersion) String() string {
	s := "xskgate " + v.Version
	if v.HaveVCS {
		c := v.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		s += " (" + c
		if v.Modified {
			s += ", modified"
		}
		s += ")"
	}
	return s + ", " + v.GoVersion
}

func cmdVersion(ctx context.Context, args []string) error {
	fs := newFlags("version", "", "Prints the module version, the commit and Go version it was built from, and the\n"+
		"kernel features xskgate can use on this machine (probing them needs root).")
	if err := fs.Parse(args); err != nil {
		return err
	}
	printVersion(os.Stdout, readBuildVersion())
	return nil
}

func printVersion(w io.Writer, v buildVersion) {
	fmt.Fprintf(w, "xskgate %s\n", v.Version)
	if v.Module != "" {
		fmt.Fprintf(w, "module:   %s\n", v.Module)
	}
	switch {
	case v.HaveVCS:
		mod := ""
		if v.Modified {
			mod = " (with uncommitted changes)"
		}
		fmt.Fprintf(w, "commit:   %s%s", v.Commit, mod)
		if v.Time != "" {
			fmt.Fprintf(w, ", %s", v.Time)
		}
		fmt.Fprintln(w)
	default:
		fmt.Fprintln(w, "commit:   not recorded (built outside a git checkout, e.g. go install module@version, whose version above says which; or with -buildvcs=false)")
	}
	fmt.Fprintf(w, "go:       %s %s/%s\n", v.GoVersion, v.OS, v.Arch)
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		fmt.Fprintf(w, "kernel:   Linux %s\n", unix.ByteSliceToString(u.Release[:]))
	}
	fmt.Fprintln(w, "kernel features:")
	if err := xdpprog.Supported(); err != nil {
		fmt.Fprintf(w, "  required (XDP programs, XSKMAP, bpf_redirect_map): %s\n", featureErr(err))
	} else {
		fmt.Fprintln(w, "  required (XDP programs, XSKMAP, bpf_redirect_map): yes")
	}
	fmt.Fprintln(w, "  AF_XDP zero-copy: per interface (the driver's): see xskgate status, bind mode")
	if c, why, err := xdpprog.ChooseCarrier(xdpprog.CarrierAuto); err != nil {
		fmt.Fprintf(w, "  XDP record carrier: %s\n", featureErr(err))
	} else {
		fmt.Fprintf(w, "  XDP record carrier: %s (%s)\n", c, why)
	}
	fmt.Fprintf(w, "  AF_XDP TX metadata (XDP_UMEM_TX_METADATA_LEN, Linux 6.11+): %s\n", probed(xsk.ProbeTxMetadata()))
	fmt.Fprintf(w, "  TX budget per sendto (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+; rings.tx_budget): %s\n", probed(xsk.ProbeTxBudget()))
}

func probed(err error) string {
	switch {
	case err == nil:
		return "yes"
	case errors.Is(err, xsk.ErrNotSupported):
		return "no"
	}
	return featureErr(err)
}

// featureErr says a probe could not tell, and why.
func featureErr(err error) string {
	if os.Geteuid() != 0 {
		return "unknown: probing needs root (run xskgate version as root)"
	}
	return "unknown: " + err.Error()
}
