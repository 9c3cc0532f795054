package packet

// Error is the reason Parse rejected a frame.
//
// It is a small integer rather than a struct so that returning it as an
// error does not allocate, and so that callers can count drops in a
// [NumErrors]uint64 array indexed by the value. The zero value is not a
// valid error; Parse never returns it.
type Error uint8

// The errors Parse returns. Their numeric values may change between
// versions; use Name for anything persisted (metric labels, logs).
const (
	_ Error = iota // zero is reserved so that a zero Error is never mistaken for a reason

	ErrTruncatedEthernet       // fewer than 14 bytes
	ErrTruncatedVLAN           // VLAN tag cut short
	ErrTooManyVLANs            // more than two VLAN tags
	ErrTruncatedIPv4           // fewer than 20 bytes after L2
	ErrBadIPv4Version          // EtherType IPv4 but version nibble != 4
	ErrBadIPv4IHL              // IHL < 5
	ErrIPv4TotalLenTooShort    // total length < IHL*4
	ErrIPv4TotalLenBeyondFrame // total length > bytes present
	ErrTruncatedIPv6           // fewer than 40 bytes after L2
	ErrBadIPv6Version          // EtherType IPv6 but version nibble != 6
	ErrIPv6PayloadBeyondFrame  // 40+payload length > bytes present
	ErrTruncatedExtHeader      // IPv6 extension header extends past the IPv6 payload
	ErrBadExtHeader            // IPv6 extension header misplaced, repeated or malformed
	ErrTooManyExtHeaders       // IPv6 extension chain longer than MaxExtHeaders
	ErrTruncatedTCP            // fewer than 20 bytes of TCP in the IP payload
	ErrBadTCPDataOff           // TCP data offset < 5 or beyond the IP payload
	ErrBadTCPOption            // TCP option overruns the header or has a wrong length for its kind
	ErrTruncatedUDP            // fewer than 8 bytes of UDP in the IP payload
	ErrBadUDPLen               // UDP length < 8 or > IP payload
	ErrTruncatedICMP           // fewer than 8 bytes of ICMP/ICMPv6 in the IP payload

	// NumErrors is one more than the largest Error, for sizing counter
	// arrays: var drops [packet.NumErrors]uint64; drops[err.(packet.Error)]++.
	NumErrors
)

// MaxExtHeaders bounds the IPv6 extension-header walk. Legitimate traffic
// carries at most a few; long chains exist only to burn parser cycles or to
// push the L4 header out of a filter's sight (RFC 7112, RFC 9098).
const MaxExtHeaders = 8

var errorText = [NumErrors]struct{ name, msg string }{
	ErrTruncatedEthernet:       {"truncated_ethernet", "packet: truncated Ethernet header"},
	ErrTruncatedVLAN:           {"truncated_vlan", "packet: truncated VLAN tag"},
	ErrTooManyVLANs:            {"too_many_vlans", "packet: more than two VLAN tags"},
	ErrTruncatedIPv4:           {"truncated_ipv4", "packet: truncated IPv4 header"},
	ErrBadIPv4Version:          {"bad_ipv4_version", "packet: IPv4 EtherType with IP version != 4"},
	ErrBadIPv4IHL:              {"bad_ipv4_ihl", "packet: IPv4 header length < 5 words"},
	ErrIPv4TotalLenTooShort:    {"ipv4_total_len_too_short", "packet: IPv4 total length shorter than header"},
	ErrIPv4TotalLenBeyondFrame: {"ipv4_total_len_beyond_frame", "packet: IPv4 total length beyond end of frame"},
	ErrTruncatedIPv6:           {"truncated_ipv6", "packet: truncated IPv6 header"},
	ErrBadIPv6Version:          {"bad_ipv6_version", "packet: IPv6 EtherType with IP version != 6"},
	ErrIPv6PayloadBeyondFrame:  {"ipv6_payload_beyond_frame", "packet: IPv6 payload length beyond end of frame"},
	ErrTruncatedExtHeader:      {"truncated_ext_header", "packet: IPv6 extension header beyond end of payload"},
	ErrBadExtHeader:            {"bad_ext_header", "packet: malformed or misplaced IPv6 extension header"},
	ErrTooManyExtHeaders:       {"too_many_ext_headers", "packet: too many IPv6 extension headers"},
	ErrTruncatedTCP:            {"truncated_tcp", "packet: truncated TCP header"},
	ErrBadTCPDataOff:           {"bad_tcp_data_off", "packet: TCP data offset out of range"},
	ErrBadTCPOption:            {"bad_tcp_option", "packet: malformed TCP option"},
	ErrTruncatedUDP:            {"truncated_udp", "packet: truncated UDP header"},
	ErrBadUDPLen:               {"bad_udp_len", "packet: UDP length out of range"},
	ErrTruncatedICMP:           {"truncated_icmp", "packet: truncated ICMP header"},
}

// Error implements the error interface.
func (e Error) Error() string {
	if e == 0 || e >= NumErrors {
		return "packet: unknown error"
	}
	return errorText[e].msg // prefixed in the table so Error() does not allocate
}

// Name returns a stable snake_case identifier suitable as a metric label.
func (e Error) Name() string { return ErrorName(e) }

// ErrorName returns the stable snake_case identifier of e, or "unknown" for
// values that are not declared constants.
func ErrorName(e Error) string {
	if e == 0 || e >= NumErrors {
		return "unknown"
	}
	return errorText[e].name
}
