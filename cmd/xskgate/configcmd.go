package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/xskgate/xskgate/internal/config"
)

func cmdConfig(ctx context.Context, args []string) error {
	if len(args) != 2 || args[0] != "check" {
		return errors.New("usage: xskgate config check FILE")
	}
	cfg, err := config.Load(args[1])
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings() {
		fmt.Println("warning:", w)
	}
	fmt.Printf("%s: ok\n", args[1])
	return nil
}
