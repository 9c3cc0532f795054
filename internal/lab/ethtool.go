package lab

import (
	"fmt"

	"github.com/xskgate/xskgate/internal/ethtool"
)

// The lab's veths have separate rx and tx channels (no combined ones), so
// ethtool.Channels' real counts are their rx_count and tx_count. Both act
// in the calling thread's network namespace.

// getChannels returns ifname's real rx/tx queue counts and their maxima.
func getChannels(ifname string) (ethtool.Channels, error) { return ethtool.ReadChannels(ifname) }

// setChannels sets ifname's real rx/tx queue counts (ethtool -L IF rx N
// tx N).
func setChannels(ifname string, rx, tx int) error {
	r, err := ethtool.Open()
	if err != nil {
		return err
	}
	defer r.Close()
	return r.SetChannels(ifname, rx, tx)
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
		rx, tx = ch.RX, ch.TX
		return nil
	})
	return rx, tx, err
}

// SetQueues sets the real rx and tx queue counts of ifname in the named
// namespace (ethtool -L IF rx N tx N; veth has no combined channels).
func SetQueues(ns, ifname string, rx, tx int) error {
	return doInNS(ns, func() error {
		if err := setChannels(ifname, rx, tx); err != nil {
			return fmt.Errorf("lab: setting rx %d tx %d queues on %s in %s: %w", rx, tx, ifname, ns, err)
		}
		return nil
	})
}
