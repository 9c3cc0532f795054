package xdpprog

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// loadWithout drops caps on one OS thread only (capabilities are per
// thread in Linux) and calls Load there. The thread is never unlocked, so
// the runtime discards it together with its reduced credentials.
func loadWithout(caps ...uint) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		for _, c := range caps {
			data[c/32].Effective &^= 1 << (c % 32)
			data[c/32].Permitted &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			errc <- err
			return
		}
		p, err := Load(1, Options{Carrier: CarrierHead})
		if err == nil {
			p.Close()
			err = errors.New("Load succeeded")
		}
		errc <- err
	}()
	return <-errc
}

func TestLoadWithoutPrivilege(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name  string
		drop  []uint
		errno unix.Errno
		want  []string
	}{
		{
			name:  "no CAP_BPF",
			drop:  []uint{unix.CAP_BPF, unix.CAP_PERFMON, unix.CAP_SYS_ADMIN, unix.CAP_NET_ADMIN},
			errno: unix.EPERM,
			want:  []string{"permission denied (EPERM)", "run as root or grant CAP_BPF, CAP_PERFMON"},
		},
		{
			// CAP_BPF alone may load XDP programs, but the verifier only
			// lets CAP_PERFMON holders subtract packet pointers.
			name:  "no CAP_PERFMON",
			drop:  []uint{unix.CAP_PERFMON, unix.CAP_SYS_ADMIN},
			errno: unix.EACCES,
			want:  []string{"pointer -= pointer prohibited", "CAP_PERFMON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := loadWithout(tt.drop...)
			msg := err.Error()
			t.Log(msg)
			if !errors.Is(err, tt.errno) {
				t.Fatalf("error %q is not %v", msg, tt.errno)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error spans several lines")
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q lacks %q", msg, w)
				}
			}
		})
	}
}
