package xsk

import "github.com/xskgate/xskgate/internal/ethtool"

// QueueCount reads the interface's real queue count through the ethtool
// channels ioctl (the kernel's bind check is against max(rx, tx) real
// queues). An error means "unknown": bind will still catch it.
func QueueCount(ifname string) (int, error) {
	ch, err := ethtool.ReadChannels(ifname)
	return max(ch.RX, ch.TX), err
}
