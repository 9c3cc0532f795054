package metrics

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// addrLog captures the address Serve logs.
type addrLog struct {
	mu   sync.Mutex
	addr string
	got  chan struct{}
}

func (h *addrLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *addrLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *addrLog) WithGroup(string) slog.Handler            { return h }
func (h *addrLog) Handle(_ context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "addr" {
			h.mu.Lock()
			if h.addr == "" {
				h.addr = a.Value.String()
				close(h.got)
			}
			h.mu.Unlock()
		}
		return true
	})
	return nil
}

func TestServe(t *testing.T) {
	reg := NewRegistry(NewCollector(newFake(t)))
	h := &addrLog{got: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, "127.0.0.1:0", reg, slog.New(h)) }()
	select {
	case <-h.got:
	case err := <-done:
		t.Fatalf("Serve returned early: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not start")
	}

	resp, err := http.Get("http://" + h.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	for _, want := range []string{
		`xskgate_packets_total{dir="rx",iface="outer",queue="0"} 10`,
		`xskgate_frames{state="free",worker="0"} 50`,
		"go_goroutines",
	} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The address is taken now: a second server must say so.
	err = Serve(context.Background(), h.addr, reg, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "already in use") || !strings.Contains(err.Error(), "metrics.listen") {
		t.Errorf("second Serve on %s: %v", h.addr, err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not stop")
	}
	if c, err := net.Dial("tcp", h.addr); err == nil {
		c.Close()
		t.Error("still listening after the context ended")
	}
}
