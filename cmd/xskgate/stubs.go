package main

import (
	"context"
	"errors"
)

func cmdRun(ctx context.Context, args []string) error    { return errors.New("not yet") }
func cmdStats(ctx context.Context, args []string) error  { return errors.New("not yet") }
func cmdConfig(ctx context.Context, args []string) error { return errors.New("not yet") }
