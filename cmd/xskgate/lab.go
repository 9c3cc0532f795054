package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/xskgate/xskgate/internal/lab"
)

func cmdLab(ctx context.Context, args []string) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "list") {
		fmt.Fprintf(os.Stderr, `Usage: xskgate lab up|down|list [flags]

  up     create namespaces <prefix>-client, <prefix>-gate, <prefix>-server:
         client eth0 (198.18.0.1/24, 2001:2::1/64) <-> outer [gate] inner <-> server eth0
         (198.18.0.2/24, 2001:2::2/64); then run in the gate namespace:
         ip netns exec <prefix>-gate xskgate run --outer outer --inner inner
  down   remove a lab (--prefix P), every lab (--all), or the labs whose owner
         process died before removing them (--stale)
  list   print the prefixes of labs that exist, with the process owning
         each lab that is not persistent (tests, demo, bench)
`)
		return flag2help(args)
	}
	sub := args[0]
	fs := newFlags("lab "+sub, "[flags]", "Manage the client | gate | server test bed.")
	prefix := fs.String("prefix", "xg", "lab name prefix")
	queues := fs.Int("queues", 2, "queues per veth end (up)")
	all := fs.Bool("all", false, "remove every lab (down)")
	stale := fs.Bool("stale", false, "remove the labs whose owner process is gone (down)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := needRoot(); err != nil {
		return err
	}
	switch sub {
	case "up":
		l, err := lab.UpContext(ctx, lab.Config{Prefix: *prefix, Queues: *queues, Persistent: true})
		if err != nil {
			return err
		}
		fmt.Printf("lab %s up: %s (eth0 %s %s) <-> %s (outer, inner) <-> %s (eth0 %s %s), %d queues\n",
			l.Prefix, l.ClientNS, l.ClientIP4, l.ClientIP6, l.GateNS, l.ServerNS, l.ServerIP4, l.ServerIP6, l.Queues)
		fmt.Printf("start the gate:  ip netns exec %s xskgate run --outer outer --inner inner\n", l.GateNS)
		fmt.Printf("try it:          ip netns exec %s ping %s\n", l.ClientNS, l.ServerIP4)
		fmt.Printf("remove it:       xskgate lab down --prefix %s\n", l.Prefix)
		return nil
	case "down":
		if *stale {
			reaped, err := lab.ReapStale()
			for _, p := range reaped {
				fmt.Printf("lab %s removed (its owner was gone)\n", p)
			}
			return err
		}
		prefixes := []string{*prefix}
		if *all {
			var err error
			if prefixes, err = lab.List(); err != nil {
				return err
			}
		}
		var errs []error
		for _, p := range prefixes {
			if err := lab.Remove(p); err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Printf("lab %s removed\n", p)
		}
		return errors.Join(errs...)
	default:
		ls, err := lab.List()
		if err != nil {
			return err
		}
		for _, p := range ls {
			if st := lab.OwnerState(p); st != "" {
				fmt.Printf("%s\t(%s)\n", p, st)
				continue
			}
			fmt.Println(p)
		}
		return nil
	}
}

func flag2help(args []string) error {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return nil
	}
	return errors.New("need a subcommand: up, down or list")
}
