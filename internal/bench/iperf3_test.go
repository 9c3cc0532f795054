package bench

import (
	"testing"
	"time"
)

func TestParseIperf3(t *testing.T) {
	out := []byte(`{"end":{"streams":[
		{"sender":{"retransmits":3,"max_snd_cwnd":1048576,"mean_rtt":400}},
		{"sender":{"retransmits":5,"max_snd_cwnd":2097152,"mean_rtt":600}}],
		"sum_received":{"bits_per_second":3.5e9}}}`)
	r, err := parseIperf3(out)
	if err != nil {
		t.Fatal(err)
	}
	want := tcpResult{Gbps: 3.5, Retransmits: 8, MeanRTT: 500 * time.Microsecond, MaxCwnd: 2 << 20}
	if r != want {
		t.Fatalf("got %+v, want %+v", r, want)
	}
	if _, err := parseIperf3([]byte("iperf3: error")); err == nil {
		t.Fatal("non-JSON output parsed")
	}
}
