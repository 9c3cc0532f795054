package xdpprog

// The XDP program is restricted C (bpf/steer.c) compiled by bpf2go; the
// objects and their Go bindings are committed, so go build needs no clang.
// Rebuilding needs clang and the libbpf headers (Debian: clang, libbpf-dev);
// TestObjectsCurrent fails when the committed objects are stale. -mcpu=v3:
// the challenge budget is one word shared by all CPUs, updated with an
// atomic compare-and-swap (BPF_CMPXCHG, Linux 5.12+).
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type config -type scope steer bpf/steer.c
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -cflags "-O2 -g -mcpu=v3 -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -type fastval -type counters fast bpf/fastpath.c
