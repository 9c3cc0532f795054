package lab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ethtoolChannels is struct ethtool_channels from <linux/ethtool.h>.
type ethtoolChannels struct {
	Cmd           uint32
	MaxRx         uint32
	MaxTx         uint32
	MaxOther      uint32
	MaxCombined   uint32
	RxCount       uint32
	TxCount       uint32
	OtherCount    uint32
	CombinedCount uint32
}

// ifreqPtr is struct ifreq with ifr_data, padded to the kernel's 40 bytes.
type ifreqPtr struct {
	Name [unix.IFNAMSIZ]byte
	Data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolChannelsIoctl issues ETHTOOL_GCHANNELS or ETHTOOL_SCHANNELS (per
// ch.Cmd) on ifname in the calling thread's network namespace. By hand, as
// in internal/xsk (channels_linux.go says why not safchain/ethtool).
func ethtoolChannelsIoctl(ifname string, ch *ethtoolChannels) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q too long", ifname)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var ifr ifreqPtr
	copy(ifr.Name[:], ifname)
	ifr.Data = unsafe.Pointer(ch)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(unix.SIOCETHTOOL), uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(ch)
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return errno
	}
	return nil
}

// getChannels returns the real rx/tx queue counts and their maxima.
// Runs in the calling thread's namespace.
func getChannels(ifname string) (ethtoolChannels, error) {
	ch := ethtoolChannels{Cmd: unix.ETHTOOL_GCHANNELS}
	err := ethtoolChannelsIoctl(ifname, &ch)
	return ch, err
}

// setChannels sets the real rx/tx queue counts (veth supports rx/tx
// channels, not combined ones). Runs in the calling thread's namespace.
func setChannels(ifname string, rx, tx uint32) error {
	ch, err := getChannels(ifname)
	if err != nil {
		return err
	}
	ch.Cmd = unix.ETHTOOL_SCHANNELS
	ch.RxCount, ch.TxCount = rx, tx
	return ethtoolChannelsIoctl(ifname, &ch)
}

// Queues returns the real number of rx and tx queues of ifname in the named
// namespace (what /sys/class/net/<if>/queues shows there), from the ethtool
// channels ioctl.
func Queues(ns, ifname string) (rx, tx int, err error) {
	err = doInNS(ns, func() error {
		ch, err := getChannels(ifname)
		if err != nil {
			return fmt.Errorf("lab: reading queue counts of %s in %s: %w", ifname, ns, err)
		}
		rx, tx = int(ch.RxCount), int(ch.TxCount)
		return nil
	})
	return rx, tx, err
}

// SetQueues sets the real rx and tx queue counts of ifname in the named
// namespace (ethtool -L IF rx N tx N; veth has no combined channels).
func SetQueues(ns, ifname string, rx, tx int) error {
	return doInNS(ns, func() error {
		if err := setChannels(ifname, uint32(rx), uint32(tx)); err != nil {
			return fmt.Errorf("lab: setting rx %d tx %d queues on %s in %s: %w", rx, tx, ifname, ns, err)
		}
		return nil
	})
}
