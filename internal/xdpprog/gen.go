package xdpprog

// The XDP program is restricted C (bpf/steer.c) compiled by bpf2go; the
// objects and their Go bindings are committed, so go build needs no clang.
// Rebuilding needs clang and the libbpf headers (Debian: clang, libbpf-dev);
// TestObjectsCurrent fails when the committed objects are stale.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type config -type scope steer bpf/steer.c
