// Runs containerd's own snapshotter conformance suite (snapshots/testsuite, containerd 1.6)
// against `strata serve` over its unix socket, one fresh daemon per case.
//
// Build offline (see run.sh):
//
//	GO111MODULE=off GOPATH=<builddir>/gopath:/usr/share/gocode go test -c
//
// Run as root with STRATA_BIN set to the strata binary.
package conformance

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/mount"
	"github.com/containerd/containerd/pkg/dialer"
	"github.com/containerd/containerd/snapshots"
	"github.com/containerd/containerd/snapshots/proxy"
	"github.com/containerd/containerd/snapshots/testsuite"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
)

// The personality under test: STRATA_SNAPSHOTTER as `strata serve --snapshotter` takes it
// (NAME or NAME=DRIVER; e.g. strata-fuse=fsfilter), default "strata" (kernel overlayfs).
var snapshotterSpec, snapshotterName = personality()

func personality() (spec, name string) {
	spec = os.Getenv("STRATA_SNAPSHOTTER")
	if spec == "" {
		spec = "strata"
	}
	return spec, strings.SplitN(spec, "=", 2)[0]
}

const (
	startTimeout    = 10 * time.Second
	stopTimeout     = 10 * time.Second
	// Keep at most this much of a daemon's output for the test log.
	maxDaemonOutput = 64 << 10
)

func TestConformance(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("the snapshotter conformance suite mounts overlays: run as root")
	}
	bin := os.Getenv("STRATA_BIN")
	if bin == "" {
		t.Fatal("STRATA_BIN is not set (path to the strata binary)")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("STRATA_BIN: %v", err)
	}
	testsuite.SnapshotterSuite(t, snapshotterName, func(ctx context.Context, root string) (snapshots.Snapshotter, func() error, error) {
		return startStrata(ctx, bin, root)
	})
}

// limitedBuffer keeps the first maxDaemonOutput bytes written to it; safe for the two
// goroutines exec copies stdout and stderr with.
type limitedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	dropped int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := maxDaemonOutput - b.buf.Len()
	if room < len(p) {
		if room > 0 {
			b.buf.Write(p[:room])
		}
		b.dropped += len(p) - max(room, 0)
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	if b.dropped > 0 {
		s += fmt.Sprintf("\n[... %d more bytes dropped]", b.dropped)
	}
	return s
}

func max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// daemon is one `strata serve` process.
type daemon struct {
	cmd    *exec.Cmd
	output *limitedBuffer
	exited chan struct{} // closed when cmd.Wait returns
	err    error         // cmd.Wait's result, valid after exited is closed
}

func startStrata(ctx context.Context, bin, root string) (_ snapshots.Snapshotter, _ func() error, retErr error) {
	// The suite's temp dir holds root/ (ours) and work/ (where the suite mounts).
	suiteDir := filepath.Dir(root)
	socket := filepath.Join(root, "strata.sock")

	d := &daemon{output: &limitedBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "serve",
		"--root", filepath.Join(root, "store"),
		"--socket", socket,
		"--snapshotter", snapshotterSpec)
	d.cmd.Stdout = d.output
	d.cmd.Stderr = d.output
	// If the test binary dies (panic, -test.timeout) the daemon must not outlive it.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s serve: %w", bin, err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	log.G(ctx).Infof("started strata serve, pid %d, socket %s", d.cmd.Process.Pid, socket)

	var conn *grpc.ClientConn
	// stop closes the connection, stops the daemon, logs its output and unmounts whatever
	// is left under the suite's temp dir.
	stop := func(started bool) error {
		var errs []string
		if conn != nil {
			if err := conn.Close(); err != nil {
				errs = append(errs, fmt.Sprintf("close grpc connection: %v", err))
			}
		}
		if err := d.stop(); err != nil && started {
			errs = append(errs, err.Error())
		}
		if started {
			for _, line := range strings.Split(strings.TrimRight(d.output.String(), "\n"), "\n") {
				if line != "" {
					log.G(ctx).Infof("strata serve[%d]: %s", d.cmd.Process.Pid, line)
				}
			}
		}
		if left, err := unmountUnder(suiteDir); err != nil {
			errs = append(errs, err.Error())
		} else if len(left) > 0 {
			errs = append(errs, fmt.Sprintf("mounts left under %s after the daemon stopped (now unmounted): %s",
				suiteDir, strings.Join(left, ", ")))
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}
	cleanup := func() error { return stop(true) }
	defer func() {
		if retErr != nil {
			// The error carries the daemon's output already.
			if err := stop(false); err != nil {
				retErr = fmt.Errorf("%w (cleanup: %v)", retErr, err)
			}
		}
	}()

	if err := d.waitForSocket(socket); err != nil {
		return nil, nil, err
	}

	dialCtx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var err error
	conn, err = grpc.DialContext(dialCtx, dialer.DialAddress(socket),
		grpc.WithInsecure(),
		grpc.WithContextDialer(dialer.ContextDialer),
		grpc.WithBlock())
	if err != nil {
		conn = nil
		return nil, nil, fmt.Errorf("dial %s: %w", socket, err)
	}
	return proxy.NewSnapshotter(snapshotsapi.NewSnapshotsClient(conn), snapshotterName), cleanup, nil
}

// waitForSocket polls until the socket accepts a connection, the daemon exits, or
// startTimeout passes.
func (d *daemon) waitForSocket(socket string) error {
	deadline := time.Now().Add(startTimeout)
	for {
		c, err := net.DialTimeout("unix", socket, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-d.exited:
			return fmt.Errorf("strata serve exited before accepting on %s: %v; output:\n%s",
				socket, d.err, d.output.String())
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("strata serve did not accept on %s within %v: %v; output:\n%s",
				socket, startTimeout, err, d.output.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop sends SIGTERM, waits up to stopTimeout, then SIGKILLs. A daemon that needs the
// kill, or exits non-zero on its own, is an error; dying of the SIGTERM is not.
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return fmt.Errorf("strata serve (pid %d) exited before cleanup: %v", d.cmd.Process.Pid, d.err)
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(stopTimeout):
		_ = d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("strata serve (pid %d) did not exit within %v of SIGTERM; killed", d.cmd.Process.Pid, stopTimeout)
	}
	if d.err != nil {
		if ee, ok := d.err.(*exec.ExitError); ok {
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM {
				return nil
			}
		}
		return fmt.Errorf("strata serve (pid %d) after SIGTERM: %v", d.cmd.Process.Pid, d.err)
	}
	return nil
}

// unmountUnder unmounts every mount at or below dir, deepest first, and returns the
// mount points it found.
func unmountUnder(dir string) ([]string, error) {
	var found []string
	for attempt := 0; attempt < 5; attempt++ {
		infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
		if err != nil {
			return found, fmt.Errorf("read mountinfo: %w", err)
		}
		if len(infos) == 0 {
			return found, nil
		}
		sort.Slice(infos, func(i, j int) bool { return len(infos[i].Mountpoint) > len(infos[j].Mountpoint) })
		for _, m := range infos {
			found = append(found, m.Mountpoint+" ("+m.FSType+")")
			if err := mount.UnmountAll(m.Mountpoint, 0); err != nil {
				_ = mount.UnmountAll(m.Mountpoint, unix.MNT_DETACH)
			}
		}
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err == nil && len(infos) > 0 {
		var still []string
		for _, m := range infos {
			still = append(still, m.Mountpoint)
		}
		return found, fmt.Errorf("could not unmount: %s", strings.Join(still, ", "))
	}
	return found, err
}
