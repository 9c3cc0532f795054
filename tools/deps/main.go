package main
import (
 _ "github.com/cilium/ebpf"
 _ "github.com/cilium/ebpf/asm"
 _ "github.com/cilium/ebpf/link"
 _ "github.com/vishvananda/netlink"
 _ "github.com/vishvananda/netns"
 _ "github.com/gopacket/gopacket"
 _ "github.com/gopacket/gopacket/pcapgo"
 _ "github.com/gopacket/gopacket/layers"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "github.com/prometheus/client_golang/prometheus/promhttp"
 _ "golang.org/x/sys/unix"
 _ "gopkg.in/yaml.v3"
)
func main(){}
