package xsk

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// QueueCount reads the interface's real queue count through the ethtool
// channels ioctl (the kernel's bind check is against max(rx, tx) real
// queues). An error means "unknown": bind will still catch it.
func QueueCount(ifname string) (int, error) {
	ch, err := ReadChannels(ifname)
	return max(ch.RX, ch.TX), err
}

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

// ReadChannels reads ifname's channels in the calling thread's network
// namespace. Drivers without the ioctl give EOPNOTSUPP.
func ReadChannels(ifname string) (Channels, error) {
	r, err := NewChannelReader()
	if err != nil {
		return Channels{}, err
	}
	defer r.Close()
	return r.Read(ifname)
}

// ChannelReader reads channels through one socket, made in the network
// namespace of the thread that called NewChannelReader, so that it can be
// used later from any thread (the ethtool ioctl acts in the socket's
// namespace).
//
// This is the ioctl by hand, not github.com/safchain/ethtool's GetChannels:
// its newest release (v0.7.0) passes the stack-allocated ethtool_channels
// to its ioctl helper as a uintptr, so when that helper's prologue grows
// the goroutine's stack the kernel writes into the old, freed stack and
// the caller reads zero queues (seen here 4 times in 400 calls at varying
// stack depths on a veth; fixed upstream in safchain/ethtool#139, not yet
// released). Read keeps a real pointer in ifr_data, which the runtime
// updates when the stack moves.
type ChannelReader struct{ fd int }

// NewChannelReader opens the reader's socket in the calling thread's
// network namespace.
func NewChannelReader() (*ChannelReader, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket for ethtool: %w", err)
	}
	return &ChannelReader{fd: fd}, nil
}

// Close closes the socket.
func (r *ChannelReader) Close() error { return unix.Close(r.fd) }

// Read reads ifname's channels (ETHTOOL_GCHANNELS).
func (r *ChannelReader) Read(ifname string) (Channels, error) {
	if len(ifname) >= unix.IFNAMSIZ {
		return Channels{}, fmt.Errorf("interface name %q too long", ifname)
	}
	type ethtoolChannels struct {
		Cmd                                         uint32
		MaxRx, MaxTx, MaxOther, MaxCombined         uint32
		RxCount, TxCount, OtherCount, CombinedCount uint32
	}
	ch := ethtoolChannels{Cmd: unix.ETHTOOL_GCHANNELS}
	// struct ifreq: the name, then ifr_data pointing at the command.
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer // a real pointer, so stack moves and the GC see it
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&ch)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(r.fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return Channels{}, e
	}
	return Channels{
		RX: int(ch.RxCount + ch.CombinedCount), TX: int(ch.TxCount + ch.CombinedCount),
		MaxRX: int(ch.MaxRx + ch.MaxCombined), MaxTX: int(ch.MaxTx + ch.MaxCombined),
		Combined: ch.MaxCombined > 0 || ch.CombinedCount > 0,
	}, nil
}
