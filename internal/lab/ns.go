package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, the same
// place `ip netns` uses (/var/run is a symlink to /run).
const NetnsDir = "/run/netns"

// validNSName rejects names that would escape NetnsDir.
func validNSName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') || strings.ContainsRune(name, 0) {
		return fmt.Errorf("lab: invalid namespace name %q: use a plain name such as %q", name, "xg1234ab-gate")
	}
	return nil
}

// nsPath is the bind-mount file of a named namespace.
func nsPath(name string) string { return filepath.Join(NetnsDir, name) }

// nsExists reports whether a named namespace file exists.
func nsExists(name string) bool {
	_, err := os.Lstat(nsPath(name))
	return err == nil
}

// doInNS runs fn on a dedicated goroutine whose OS thread is locked and
// switched into the named network namespace. Afterwards the thread is
// switched back; if that fails the thread stays locked, so the runtime
// destroys it when the goroutine exits and no other goroutine ever runs in
// the wrong namespace. A panic in fn is re-raised in the caller.
func doInNS(name string, fn func() error) error {
	if err := validNSName(name); err != nil {
		return err
	}
	target, err := netns.GetFromName(name)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return &Error{Kind: ErrNotFound, Msg: fmt.Sprintf("lab: namespace %q does not exist: create the lab first (`xskgate lab up`)", name), Err: err}
		}
		return fmt.Errorf("lab: opening namespace %q: %w", name, err)
	}
	defer target.Close()
	return doInHandle(target, name, fn)
}

// doInHandle is doInNS for an already opened namespace handle.
func doInHandle(target netns.NsHandle, name string, fn func() error) error {
	type result struct {
		err      error
		panicked bool
		pv       any
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("lab: reading the thread's namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			// setns failed: the thread is still where it was.
			runtime.UnlockOSThread()
			ch <- result{err: mapPerm(fmt.Sprintf("entering namespace %q", name), err)}
			return
		}
		var res result
		func() {
			defer func() {
				if p := recover(); p != nil {
					res = result{panicked: true, pv: p}
				}
			}()
			res.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it dies with this goroutine.
			if res.err == nil && !res.panicked {
				res.err = fmt.Errorf("lab: restoring the thread's namespace after %q: %w (thread discarded)", name, err)
			}
			ch <- res
			return
		}
		runtime.UnlockOSThread()
		ch <- res
	}()
	res := <-ch
	if res.panicked {
		panic(res.pv)
	}
	return res.err
}

// newHandleIn opens a rtnetlink handle whose socket lives in the namespace.
func newHandleIn(ns netns.NsHandle, name string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := doInHandle(ns, name, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: opening netlink in namespace %q: %w", name, err)
	}
	return h, nil
}

// handleByName opens a rtnetlink handle in a named namespace.
func handleByName(name string) (*netlink.Handle, error) {
	var h *netlink.Handle
	err := doInNS(name, func() error {
		var err error
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// writeSysctl writes /proc/sys/<key> (key with slashes, e.g.
// "net/ipv4/ip_forward"). Must run inside doInNS: /proc/sys/net shows the
// namespace of the calling thread.
func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("lab: sysctl %s=%s: %w", strings.ReplaceAll(key, "/", "."), value, err)
	}
	return nil
}

// readSysctl reads /proc/sys/<key>; see writeSysctl.
func readSysctl(key string) (string, error) {
	b, err := os.ReadFile(filepath.Join("/proc/sys", key))
	if err != nil {
		return "", fmt.Errorf("lab: reading sysctl %s: %w", strings.ReplaceAll(key, "/", "."), err)
	}
	return strings.TrimSpace(string(b)), nil
}

// SetSysctl writes a sysctl (slash or dot form, e.g. "net.ipv4.ip_forward")
// inside the named namespace.
func SetSysctl(ns, key, value string) error {
	key = strings.ReplaceAll(key, ".", "/")
	return doInNS(ns, func() error { return writeSysctl(key, value) })
}

// GetSysctl reads a sysctl inside the named namespace.
func GetSysctl(ns, key string) (string, error) {
	key = strings.ReplaceAll(key, ".", "/")
	var v string
	err := doInNS(ns, func() error {
		var err error
		v, err = readSysctl(key)
		return err
	})
	return v, err
}

// ensureNetnsDir makes NetnsDir exist and be a shared mount point, as
// iproute2 does, so that removing a namespace also unmounts the copies held
// by mount namespaces of `ip netns exec` children.
func ensureNetnsDir() error {
	if err := os.MkdirAll(NetnsDir, 0o755); err != nil {
		return mapPerm("creating namespaces", err)
	}
	err := unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: bind it onto itself, then make it shared.
		if err = unix.Mount(NetnsDir, NetnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err == nil {
			err = unix.Mount("", NetnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		}
	}
	if err != nil {
		return mapPerm("creating namespaces", fmt.Errorf("making %s a shared mount: %w", NetnsDir, err))
	}
	return nil
}

// createNamedNS creates a named network namespace (bind-mounted under
// NetnsDir) without moving any goroutine's thread into it for longer than
// the creation, and returns an open handle to it.
func createNamedNS(name string) (netns.NsHandle, error) {
	var h netns.NsHandle = -1
	type result struct {
		h   netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("lab: reading the thread's namespace: %w", err)}
			return
		}
		defer orig.Close()
		nh, err := netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			// Thread is in the new (or an unknown) namespace: discard it.
			if err == nil {
				nh.Close()
				err = fmt.Errorf("restoring the thread's namespace: %w", rerr)
			}
			ch <- result{-1, err}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{nh, err}
	}()
	res := <-ch
	h = res.h
	if res.err != nil {
		if errors.Is(res.err, os.ErrExist) {
			return -1, &Error{Kind: ErrExists, Msg: fmt.Sprintf("lab: namespace %q already exists: remove it (`ip netns del %s`)", name, name), Err: res.err}
		}
		// NewNamed leaves its (empty, unmounted) file behind when the bind
		// mount fails: remove it unless something else mounted a namespace
		// there meanwhile.
		var st unix.Statfs_t
		if unix.Statfs(nsPath(name), &st) == nil && st.Type != unix.NSFS_MAGIC {
			_ = os.Remove(nsPath(name))
		}
		return -1, mapPerm(fmt.Sprintf("creating namespace %q", name), res.err)
	}
	return h, nil
}

// deleteNamedNS unmounts and removes a named namespace. A namespace that is
// not there is not an error.
func deleteNamedNS(name string) error {
	if err := validNSName(name); err != nil {
		return err
	}
	p := nsPath(name)
	if _, err := os.Lstat(p); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return mapPerm(fmt.Sprintf("unmounting namespace %q", name), err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		if errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("lab: removing namespace %q: %w: a process in another mount namespace still holds it; stop it and retry", name, err)
		}
		return mapPerm(fmt.Sprintf("removing namespace %q", name), err)
	}
	return nil
}

// ipPath finds iproute2's `ip`, also where PATH lacks the sbin directories.
func ipPath() string {
	if p, err := exec.LookPath("ip"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return "ip"
}

// CommandIn returns `ip netns exec ns name args...`.
func CommandIn(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", ns, name}, args...)
	return exec.CommandContext(ctx, ipPath(), full...)
}
