package ethtool

// Channels, as `ethtool -l` shows and `ethtool -L` sets them.

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Channels are an interface's queue counts as the ethtool channels ioctl
// (ETHTOOL_GCHANNELS) reports them. RX and TX are the real queue counts
// (real_num_rx_queues, real_num_tx_queues): a combined channel counts in
// both.
type Channels struct {
	RX, TX       int
	MaxRX, MaxTX int
	// Combined: the driver counts combined channels (ethtool -L IF
	// combined N); else separate ones (ethtool -L IF rx N tx N, as veth).
	Combined bool
}

// struct ethtool_channels: cmd, then max_rx, max_tx, max_other,
// max_combined, rx_count, tx_count, other_count, combined_count, all u32.
const (
	chMaxRX = 4 * (1 + iota)
	chMaxTX
	_ // max_other
	chMaxCombined
	chRX
	chTX
	_ // other_count
	chCombined
	channelsSize
)

// channels issues cmd (ETHTOOL_GCHANNELS or ETHTOOL_SCHANNELS) with b,
// a struct ethtool_channels.
func (r *Reader) channels(ifname string, cmd uint32, b []byte) error {
	binary.NativeEndian.PutUint32(b, cmd)
	return r.Do(ifname, b)
}

// Channels reads ifname's channels (ETHTOOL_GCHANNELS). Drivers without
// the ioctl give EOPNOTSUPP.
func (r *Reader) Channels(ifname string) (Channels, error) {
	b := make([]byte, channelsSize)
	if err := r.channels(ifname, unix.ETHTOOL_GCHANNELS, b); err != nil {
		return Channels{}, err
	}
	u := func(off int) int { return int(binary.NativeEndian.Uint32(b[off:])) }
	return Channels{
		RX: u(chRX) + u(chCombined), TX: u(chTX) + u(chCombined),
		MaxRX: u(chMaxRX) + u(chMaxCombined), MaxTX: u(chMaxTX) + u(chMaxCombined),
		Combined: u(chMaxCombined) > 0 || u(chCombined) > 0,
	}, nil
}

// SetChannels sets ifname's separate RX and TX channel counts (ethtool -L
// IF rx N tx N, what veth has), leaving its other and combined channels as
// they are: ETHTOOL_SCHANNELS takes the whole struct, so it is read first.
func (r *Reader) SetChannels(ifname string, rx, tx int) error {
	b := make([]byte, channelsSize)
	if err := r.channels(ifname, unix.ETHTOOL_GCHANNELS, b); err != nil {
		return err
	}
	binary.NativeEndian.PutUint32(b[chRX:], uint32(rx))
	binary.NativeEndian.PutUint32(b[chTX:], uint32(tx))
	return r.channels(ifname, unix.ETHTOOL_SCHANNELS, b)
}

// ReadChannels reads ifname's channels through a socket of its own, in
// the calling thread's network namespace.
func ReadChannels(ifname string) (Channels, error) {
	r, err := Open()
	if err != nil {
		return Channels{}, err
	}
	defer r.Close()
	return r.Channels(ifname)
}
