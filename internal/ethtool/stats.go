package ethtool

// Driver statistics, as `ethtool -S` shows them.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// From <linux/ethtool.h>.
const (
	cmdGSSetInfo = 0x37 // ETHTOOL_GSSET_INFO
	cmdGStrings  = 0x1b // ETHTOOL_GSTRINGS
	cmdGStats    = 0x1d // ETHTOOL_GSTATS
	ssStats      = 1    // ETH_SS_STATS
	gstringLen   = 32   // ETH_GSTRING_LEN
	// maxStats bounds what a driver may report: far above any real one
	// (veth: 3 + 10 per queue), low enough to refuse garbage.
	maxStats = 1 << 16
)

// count is the number of statistics ifname has now (ETHTOOL_GSSET_INFO).
func (r *Reader) count(ifname string) (int, error) {
	// struct ethtool_sset_info: cmd, reserved, sset_mask (u64), data[1].
	b := make([]byte, 4+4+8+4)
	binary.NativeEndian.PutUint32(b[0:], cmdGSSetInfo)
	binary.NativeEndian.PutUint64(b[8:], 1<<ssStats)
	if err := r.Do(ifname, b); err != nil {
		return 0, err
	}
	if binary.NativeEndian.Uint64(b[8:])&(1<<ssStats) == 0 {
		return 0, nil // the driver has no statistics
	}
	n := int(binary.NativeEndian.Uint32(b[16:]))
	if n > maxStats {
		return 0, fmt.Errorf("driver reports %d statistics", n)
	}
	return n, nil
}

// ErrChanged is returned when the device's statistics changed in number
// between reading their names and their values (its queue count changed):
// read again.
var ErrChanged = errors.New("ethtool statistics changed while being read")

// Stats reads ifname's statistics by name, as `ethtool -S` shows them.
func (r *Reader) Stats(ifname string) (map[string]uint64, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("ethtool -S %s: name too long", ifname)
	}
	n, err := r.count(ifname)
	if err != nil {
		return nil, fmt.Errorf("ethtool -S %s: %w", ifname, err)
	}
	if n == 0 {
		return map[string]uint64{}, nil
	}
	// The kernel writes as many entries as the driver has when it
	// answers, whatever length we pass: leave room for the count to grow
	// meanwhile, and refuse an answer that differs from n.
	room := 2*n + 64
	// struct ethtool_gstrings: cmd, string_set, len, then the names.
	names := make([]byte, 12+room*gstringLen)
	binary.NativeEndian.PutUint32(names[0:], cmdGStrings)
	binary.NativeEndian.PutUint32(names[4:], ssStats)
	binary.NativeEndian.PutUint32(names[8:], uint32(n))
	if err := r.Do(ifname, names); err != nil {
		return nil, fmt.Errorf("ethtool -S %s: names: %w", ifname, err)
	}
	// struct ethtool_stats: cmd, n_stats, then the u64 values.
	vals := make([]byte, 8+room*8)
	binary.NativeEndian.PutUint32(vals[0:], cmdGStats)
	binary.NativeEndian.PutUint32(vals[4:], uint32(n))
	if err := r.Do(ifname, vals); err != nil {
		return nil, fmt.Errorf("ethtool -S %s: values: %w", ifname, err)
	}
	if int(binary.NativeEndian.Uint32(names[8:])) != n || int(binary.NativeEndian.Uint32(vals[4:])) != n {
		return nil, fmt.Errorf("ethtool -S %s: %w", ifname, ErrChanged)
	}
	st := make(map[string]uint64, n)
	for i := range n {
		name := names[12+i*gstringLen : 12+(i+1)*gstringLen]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		st[string(name)] += binary.NativeEndian.Uint64(vals[8+8*i:])
	}
	return st, nil
}

// Sum reads ifname's statistics and sums those whose name match accepts
// (veth names its per-queue XDP_TX failures rx_queue_N_xdp_tx_errors,
// mlx5 rx_xdp_tx_err, ...), and reports whether there was any.
func (r *Reader) Sum(ifname string, match func(name string) bool) (n uint64, found bool, err error) {
	st, err := r.Stats(ifname)
	if err != nil {
		return 0, false, err
	}
	for k, v := range st {
		if match(k) {
			n += v
			found = true
		}
	}
	return n, found, nil
}
