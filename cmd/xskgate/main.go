// Command xskgate is an AF_XDP bump in the wire: it forwards every frame
// between an outer and an inner interface through AF_XDP sockets on one
// shared UMEM, inspects it on the way, and checks that no frame is ever in
// two rings at once.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, args []string) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "[flags]", "run the gate daemon between two interfaces", cmdRun},
		{"demo", "[flags]", "build the lab, forward verified TCP through the gate, report, clean up", cmdDemo},
		{"bench", "[flags]", "measure packets/s: plain Linux forwarding vs xskgate, interleaved", cmdBench},
		{"replay", "--fault NAME [flags]", "reproduce a kernel fault on the software model and show it caught", cmdReplay},
		{"lab", "up|down|list [flags]", "create or remove the client | gate | server test bed", cmdLab},
		{"status", "[--control PATH]", "show a running daemon's setup: XDP programs, bind modes, checks, protection", cmdStatus},
		{"stats", "[--control PATH]", "print a running daemon's counters", cmdStats},
		{"top", "[--interval D] [--once]", "live rates per queue, drops, rings, violations", cmdTop},
		{"flows", "[--state S] [--dst P]", "list the TCP flows a running daemon tracks", cmdFlows},
		{"violations", "", "print a running daemon's integrity violations and evidence files", cmdViolations},
		{"dump", "", "write a running daemon's flight recorder now", cmdDump},
		{"checks", "[NAME=on|off ...]", "show or switch a running daemon's integrity checks", cmdChecks},
		{"reload", "", "re-read the config file (rules, checks) without losing flows", cmdReload},
		{"config", "check FILE", "validate a configuration file", cmdConfig},
		{"version", "", "print the version, commit, Go version and the kernel features found", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `xskgate: AF_XDP bump in the wire with descriptor integrity checks

Usage: xskgate <command> [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %-22s %s\n", c.name, c.args, c.summary)
	}
	fmt.Fprintf(w, "\nRun 'xskgate <command> -h' for a command's flags. Most commands need root.\n")
}

func main() {
	if len(os.Args) < 2 {
		usage(os.Stderr)
		os.Exit(2)
	}
	name := os.Args[1]
	if name == "-h" || name == "--help" || name == "help" {
		usage(os.Stdout)
		return
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		// SIGINT/SIGTERM cancel the context; every command tears down what
		// it made before returning.
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := c.run(ctx, os.Args[2:])
		stop()
		switch {
		case err == nil:
		case errors.Is(err, flag.ErrHelp):
		case errors.Is(err, context.Canceled):
			fmt.Fprintln(os.Stderr, "xskgate: interrupted; everything was cleaned up")
			os.Exit(130)
		default:
			fmt.Fprintf(os.Stderr, "xskgate %s: %v\n", name, err)
			os.Exit(1)
		}
		return
	}
	fmt.Fprintf(os.Stderr, "xskgate: unknown command %q\n\n", name)
	usage(os.Stderr)
	os.Exit(2)
}

// newFlags makes a FlagSet whose -h prints the command's usage.
func newFlags(name, args, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: xskgate %s %s\n\n%s\n\nFlags:\n", name, args, about)
		fs.PrintDefaults()
	}
	return fs
}

func logger(level string, json bool) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	if json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func needRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW, CAP_IPC_LOCK): run with sudo")
	}
	return nil
}
