package pcapng

// Cost returns how many bytes Write(r) would add to the file: the Enhanced
// Packet Block and, the first time, the section header, and for a new
// interface its description block. Callers that must keep a byte budget
// reserve Cost before Write; Size afterwards tells what it really took.
// It mirrors pcapgo's block layout (pinned by TestCostIsExact).
func (w *Writer) Cost(r Record) int64 {
	w.mu.Lock()
	_, known := w.ifaces[r.Iface]
	first := w.ng == nil
	w.mu.Unlock()
	var n int64
	if first {
		n += sectionHeaderSize()
	}
	if !known {
		n += interfaceSize(r.Iface)
	}
	return n + packetSize(r)
}

// opt is the size of one pcapng option carrying n bytes: code, length,
// value padded to 4.
func opt(n int) int64 { return 4 + pad4(int64(n)) }

func pad4(n int64) int64 { return (n + 3) &^ 3 }

func sectionHeaderSize() int64 {
	si := sectionInfo().SectionInfo
	// block type, length, byte-order magic, version, section length;
	// options and their end marker; trailing length.
	return 24 + opt(len(si.Application)) + opt(len(si.Hardware)) + opt(len(si.OS)) + 4 + 4
}

func interfaceSize(iface string) int64 {
	in := newInterface(iface)
	// block type, length, link type, reserved, snaplen; name, description,
	// OS, timestamp resolution (1 byte), end marker; trailing length.
	return 16 + opt(len(in.Name)) + opt(len(in.Description)) + opt(len(in.OS)) + opt(1) + 4 + 4
}

func packetSize(r Record) int64 {
	data := min(len(r.Data), SnapLen)
	// block type, length, interface, timestamp (2), captured and original
	// length; the data padded; queue (u32) and packet id (u64) options.
	n := 28 + pad4(int64(data)) + opt(4) + opt(8)
	if r.Comment != "" {
		n += opt(len(truncate(r.Comment, maxComment)))
	}
	if r.XDPVerdict != nil {
		n += opt(9) // verdict type byte + u64
	}
	return n + 4 + 4 // end of options, trailing length
}
