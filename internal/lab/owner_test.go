package lab

import (
	"bufio"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary, run again as a child, build a lab with a
// random prefix, print it and wait to be killed (TestLabOwnerChild).
const childEnv = "XSKGATE_LAB_OWNER_CHILD"

// TestLabOwnerChild is the child's side of TestStaleLabReaped; run alone it
// does nothing.
func TestLabOwnerChild(t *testing.T) {
	if os.Getenv(childEnv) != "1" {
		t.Skip("the child of TestStaleLabReaped")
	}
	l, err := Up(Config{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	os.Stdout.WriteString("PREFIX=" + l.Prefix + "\n")
	// Killed long before this; bounded all the same.
	time.Sleep(time.Minute)
	l.Down()
}

// TestStaleLabReaped kills (SIGKILL) a process that built a lab, so that its
// cleanup never runs, and checks that the next reap removes that lab while
// leaving alone labs whose owner runs (random or chosen prefix) and a
// persistent lab.
func TestStaleLabReaped(t *testing.T) {
	needRoot(t)
	mine, err := Up(Config{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mine.Down() })
	chosen, err := Up(Config{Queues: 1, Prefix: testPrefix(t, "xo")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chosen.Down() })
	persistent, err := Up(Config{Queues: 1, Prefix: testPrefix(t, "xp"), Persistent: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { persistent.Down() })

	cmd := exec.Command(os.Args[0], "-test.run=^TestLabOwnerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "PREFIX="); ok {
				lines <- p
				return
			}
		}
		close(lines)
	}()
	var prefix string
	select {
	case p, ok := <-lines:
		if !ok {
			t.Fatal("the child exited without building its lab")
		}
		prefix = p
	case <-time.After(time.Minute):
		t.Fatal("the child built no lab within a minute")
	}
	t.Cleanup(func() { Remove(prefix) })
	if st := OwnerState(prefix); !strings.HasPrefix(st, "pid ") {
		t.Fatalf("owner of the child's lab: %q, want its pid", st)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if st := OwnerState(prefix); !strings.HasPrefix(st, "stale") {
		t.Fatalf("owner of the killed child's lab: %q, want stale", st)
	}
	if ls, _ := List(); !slices.Contains(ls, prefix) {
		t.Fatalf("the killed child's lab %s is not there before the reap: %v", prefix, ls)
	}

	reaped, err := ReapStale()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(reaped, prefix) {
		t.Errorf("reaped %v, want %s among them", reaped, prefix)
	}
	assertGone(t, prefix)
	if _, err := os.Stat(ownerPath(prefix)); !os.IsNotExist(err) {
		t.Errorf("owner record of %s left: %v", prefix, err)
	}
	ls, err := List()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{mine.Prefix, chosen.Prefix, persistent.Prefix} {
		if !slices.Contains(ls, p) {
			t.Errorf("lab %s was reaped: its owner runs (or it has none)", p)
		}
	}
	if st := OwnerState(chosen.Prefix); !strings.HasPrefix(st, "pid ") {
		t.Errorf("a lab with a chosen prefix has owner %q, want this process", st)
	}
	if st := OwnerState(persistent.Prefix); st != "" {
		t.Errorf("a persistent lab has owner %q, want none", st)
	}
	if err := mine.Down(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ownerPath(mine.Prefix)); !os.IsNotExist(err) {
		t.Errorf("Down left the owner record of %s: %v", mine.Prefix, err)
	}
}
