// Package lab builds xskgate's network test bed: three named network
// namespaces wired as client ↔ gate ↔ server with two veth pairs.
//
//	<prefix>-client            <prefix>-gate             <prefix>-server
//	  eth0  <──── veth ────>  outer    inner  <──── veth ────>  eth0
//	198.18.0.1/24                                         198.18.0.2/24
//	2001:2::1/64                                          2001:2::2/64
//
// The gate's outer and inner have no addresses and IPv6 disabled, so the
// gate itself sends nothing: it is a wire that xskgate (or, for the
// baseline, plain kernel forwarding, see SetKernelForwarding) has to
// bridge. Client and server share one subnet. Addresses come only from the
// benchmarking ranges (RFC 2544 198.18.0.0/15, RFC 5180 2001:2::/48).
//
// Everything is done with netlink and setns; `ip netns exec NAME` works on
// the namespaces (they are bind-mounted under /run/netns) and Command
// builds such commands.
//
// Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
)

// Interface names.
const (
	OuterName  = "outer" // gate side of the client pair, in the gate ns
	InnerName  = "inner" // gate side of the server pair, in the gate ns
	HostIfName = "eth0"  // client's and server's interface
)

// Defaults and limits.
const (
	DefaultQueues = 2
	DefaultMTU    = 1500
	MaxQueues     = 64
	MinMTU        = 68
	MaxMTU        = 65535
	MaxPrefixLen  = 16
	DefaultPrefix = "xg" // followed by 6 random hex digits
)

// Addresses (benchmarking ranges only).
var (
	ClientIP4 = netip.MustParseAddr("198.18.0.1")
	ServerIP4 = netip.MustParseAddr("198.18.0.2")
	ClientIP6 = netip.MustParseAddr("2001:2::1")
	ServerIP6 = netip.MustParseAddr("2001:2::2")
)

const (
	prefixLen4 = 24
	prefixLen6 = 64
)

// Config describes a lab. The zero value is a valid default lab.
type Config struct {
	// Prefix names the namespaces <Prefix>-client/-gate/-server. Empty:
	// "xg" + 6 random hex digits. At most 16 of [a-z0-9-], starting with
	// a letter or digit and not ending with '-'.
	Prefix string
	// Queues is the number of rx and tx queues of every veth end
	// (default 2, at most 64).
	Queues int
	// MTU of every veth end (default 1500, 68..65535).
	MTU int
	// StaticNeighbors installs permanent neighbour entries on the client
	// (server's addresses → server's MAC) and on the server (client's
	// addresses → client's MAC), so traffic needs no ARP/ND through the
	// gate.
	StaticNeighbors bool
	// Persistent: the lab outlives the process that builds it (`xskgate
	// lab up`), so it gets no owner record and is never reaped. Otherwise
	// the lab belongs to this process: when the process dies before
	// removing it, the next Up removes it (see OwnerDir).
	Persistent bool

	// afterStep, for tests: called after each step of Up; an error fails
	// Up there.
	afterStep func(step string) error
}

// Lab is a running test bed. Its fields are read-only.
type Lab struct {
	Prefix                     string
	ClientNS, GateNS, ServerNS string // namespace names, for Do/Command/`ip netns exec`
	Queues                     int
	MTU                        int
	StaticNeighbors            bool

	ClientIP4, ServerIP4, ClientIP6, ServerIP6 netip.Addr
	ClientMAC, ServerMAC, OuterMAC, InnerMAC   net.HardwareAddr
	// ifindex of outer/inner inside the gate ns, and of eth0 in client/server.
	OuterIndex, InnerIndex   int
	ClientIndex, ServerIndex int

	mu   sync.Mutex
	down bool
}

var prefixRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidatePrefix checks a lab prefix.
func ValidatePrefix(p string) error {
	if len(p) == 0 || len(p) > MaxPrefixLen || !prefixRE.MatchString(p) {
		return invalidf("lab: invalid prefix %q: use 1 to %d characters of [a-z0-9-], starting and ending with a letter or digit", p, MaxPrefixLen)
	}
	return nil
}

// NSNames returns the client, gate and server namespace names of a prefix.
func NSNames(prefix string) (client, gate, server string) {
	return prefix + "-client", prefix + "-gate", prefix + "-server"
}

func randomPrefix() (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lab: random prefix: %w", err)
	}
	return DefaultPrefix + hex.EncodeToString(b[:]), nil
}

func (cfg *Config) normalize() error {
	if cfg.Queues == 0 {
		cfg.Queues = DefaultQueues
	}
	if cfg.Queues < 1 || cfg.Queues > MaxQueues {
		return invalidf("lab: invalid queue count %d: use 1..%d", cfg.Queues, MaxQueues)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < MinMTU || cfg.MTU > MaxMTU {
		return invalidf("lab: invalid MTU %d: use %d..%d", cfg.MTU, MinMTU, MaxMTU)
	}
	if cfg.Prefix != "" {
		return ValidatePrefix(cfg.Prefix)
	}
	return nil
}

func existsError(prefix string) error {
	return &Error{Kind: ErrExists, Msg: fmt.Sprintf("lab: a lab with prefix %q already exists: run `xskgate lab down --prefix %s`", prefix, prefix)}
}

// Up builds a lab. On any failure it removes what it made before
// returning the error.
func Up(cfg Config) (*Lab, error) { return UpContext(context.Background(), cfg) }

// UpContext is Up that stops between steps when ctx is done (the CLI
// cancels ctx on SIGINT/SIGTERM), removing what it made, and returns
// ctx's error.
func UpContext(ctx context.Context, cfg Config) (*Lab, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	// A lab belongs to the process that builds it (see OwnerDir) unless
	// it is Persistent. Labs of processes killed before their cleanup go
	// first; failing to remove one does not stop this one.
	owned := !cfg.Persistent
	if owned {
		_, _ = ReapStale()
	}
	if cfg.Prefix == "" {
		for i := 0; ; i++ {
			p, err := randomPrefix()
			if err != nil {
				return nil, err
			}
			c, g, s := NSNames(p)
			if !nsExists(c) && !nsExists(g) && !nsExists(s) {
				cfg.Prefix = p
				break
			}
			if i == 10 {
				return nil, fmt.Errorf("lab: could not find an unused random prefix: pass one")
			}
		}
	} else if c, g, s := NSNames(cfg.Prefix); nsExists(c) || nsExists(g) || nsExists(s) {
		return nil, existsError(cfg.Prefix) // before the owner record: it is another's lab
	}
	if owned {
		if err := writeOwner(cfg.Prefix); err != nil {
			return nil, err
		}
	}
	b := &builder{cfg: cfg, ctx: ctx, owned: owned}
	l, err := b.build()
	if err != nil {
		if cerr := b.cleanup(); cerr != nil {
			return nil, fmt.Errorf("%w; cleanup also failed: %v (run `xskgate lab down --prefix %s`)", err, cerr, cfg.Prefix)
		}
		return nil, err
	}
	return l, nil
}

// Open re-discovers an existing lab by prefix (e.g. to take it down from
// another process).
func Open(prefix string) (*Lab, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	l := &Lab{Prefix: prefix, ClientIP4: ClientIP4, ServerIP4: ServerIP4, ClientIP6: ClientIP6, ServerIP6: ServerIP6}
	l.ClientNS, l.GateNS, l.ServerNS = NSNames(prefix)
	var missing []string
	for _, n := range []string{l.ClientNS, l.GateNS, l.ServerNS} {
		if !nsExists(n) {
			missing = append(missing, n)
		}
	}
	if len(missing) == 3 {
		return nil, &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("lab: no lab with prefix %q: see `xskgate lab list`", prefix)}
	}
	if len(missing) > 0 {
		return nil, &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("lab: lab %q is incomplete (missing %s): run `xskgate lab down --prefix %s`", prefix, strings.Join(missing, ", "), prefix)}
	}
	var hs []*netlink.Handle
	defer func() {
		for _, h := range hs {
			h.Close()
		}
	}()
	for _, n := range []string{l.ClientNS, l.GateNS, l.ServerNS} {
		h, err := handleByName(n)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	client, gate, server := hs[0], hs[1], hs[2]
	if err := l.discover(client, gate, server); err != nil {
		return nil, fmt.Errorf("%w: the lab looks broken: run `xskgate lab down --prefix %s`", err, prefix)
	}
	if link, err := client.LinkByIndex(l.ClientIndex); err == nil {
		l.MTU = link.Attrs().MTU
	}
	rx, tx, err := Queues(l.ClientNS, HostIfName)
	if err != nil {
		return nil, err
	}
	l.Queues = min(rx, tx)
	// StaticNeighbors: the client has a permanent entry for the server's
	// IPv4 address with the server's MAC.
	if ns, err := client.NeighList(l.ClientIndex, netlink.FAMILY_V4); err == nil {
		for _, n := range ns {
			if n.IP.Equal(net.IP(ServerIP4.AsSlice())) && n.State&netlink.NUD_PERMANENT != 0 && n.HardwareAddr.String() == l.ServerMAC.String() {
				l.StaticNeighbors = true
			}
		}
	}
	return l, nil
}

// Remove deletes the namespaces of the lab with this prefix, whatever state
// it is in (also half-built). Missing namespaces are not an error.
func Remove(prefix string) error {
	if err := ValidatePrefix(prefix); err != nil {
		return err
	}
	c, g, s := NSNames(prefix)
	var errs []error
	// Gate first: its deletion destroys both veth pairs.
	for _, n := range []string{g, c, s} {
		if err := deleteNamedNS(n); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		errs = append(errs, removeOwner(prefix))
	}
	return errors.Join(errs...)
}

// Down removes the lab's namespaces (which destroys the veths). It is
// idempotent and safe to call from several goroutines, e.g. a signal
// handler's.
func (l *Lab) Down() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return nil
	}
	if err := Remove(l.Prefix); err != nil {
		return err
	}
	l.down = true
	return nil
}

// List returns the prefixes of the labs present, complete or not, sorted.
func List() ([]string, error) {
	ents, err := os.ReadDir(NetnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("lab: listing %s: %w", NetnsDir, err)
	}
	set := map[string]bool{}
	for _, e := range ents {
		for _, suf := range []string{"-client", "-gate", "-server"} {
			if p, ok := strings.CutSuffix(e.Name(), suf); ok && ValidatePrefix(p) == nil {
				set[p] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out, nil
}

// Do runs fn on a locked OS thread switched into the named namespace (one
// of l.ClientNS, l.GateNS, l.ServerNS, or any other named namespace), and
// switches the thread back afterwards; if that fails the thread is
// discarded. fn runs on its own goroutine: it must not call t.FailNow and
// friends, and goroutines it starts run outside the namespace. Sockets
// made inside fn stay in the namespace and can be used from anywhere.
func (l *Lab) Do(ns string, fn func() error) error { return doInNS(ns, fn) }

// Command returns `ip netns exec ns name args...`.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return CommandIn(ctx, ns, name, args...)
}

// LinkStats returns the kernel's packet counters of ifname in ns.
func (l *Lab) LinkStats(ns, ifname string) (rxPackets, txPackets uint64, err error) {
	h, err := handleByName(ns)
	if err != nil {
		return 0, 0, err
	}
	defer h.Close()
	link, err := h.LinkByName(ifname)
	if err != nil {
		return 0, 0, fmt.Errorf("lab: finding %s in %s: %w", ifname, ns, err)
	}
	st := link.Attrs().Statistics
	if st == nil {
		return 0, 0, fmt.Errorf("lab: no statistics for %s in %s", ifname, ns)
	}
	return st.RxPackets, st.TxPackets, nil
}

// QueueCounts returns the real rx/tx queue counts of ifname in ns (see Queues).
func (l *Lab) QueueCounts(ns, ifname string) (rx, tx int, err error) { return Queues(ns, ifname) }
