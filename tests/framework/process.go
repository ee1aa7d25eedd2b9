// Package framework starts the real parts keyhook is tested against — etcd,
// kube-apiserver, kube-controller-manager, a Vault dev server and the keyhook
// webhook and controller binaries — on loopback, for the end-to-end tests and `make demo`.
package framework

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Process is a child process whose output is kept for assertions.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	tee io.Writer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tee != nil {
		_, _ = b.tee.Write(p)
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Start runs bin with args; its combined output is kept, and copied to logFile
// when that is not empty.
func Start(name, logFile string, env []string, bin string, args ...string) (*Process, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	out := &syncBuffer{}
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, err
		}
		out.tee = f
	}
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so that stopping it stops its children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Output is everything the process printed so far.
func (p *Process) Output() string { return p.out.String() }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM, waits up to grace, then kills.
func (p *Process) Stop(grace time.Duration) error {
	if p == nil || p.Exited() {
		return nil
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return nil // a signal-caused exit is the expected end
	}
	return p.err
}

// Kill kills the process group with SIGKILL and waits for it.
func (p *Process) Kill() {
	if p == nil || p.Exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// WaitFor polls cond until it returns true or ctx ends.
func WaitFor(ctx context.Context, every time.Duration, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("%w (last error: %v)", ctx.Err(), last)
			}
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// RepoRoot is the root of the keyhook repository.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binaries locates keyhook's webhook and init-agent binaries: $KEYHOOK_BIN
// when set (make test builds them there), else they are built into dir.
func Binaries(dir string) (webhook, agent string, err error) {
	bins, err := binaries(dir, "keyhook-webhook", "keyhook-init-agent")
	if err != nil {
		return "", "", err
	}
	return bins[0], bins[1], nil
}

// ControllerBinary locates the keyhook-controller binary as Binaries does.
func ControllerBinary(dir string) (string, error) {
	bins, err := binaries(dir, "keyhook-controller")
	if err != nil {
		return "", err
	}
	return bins[0], nil
}

// AgentBinary locates the init-agent built with one provider only
// (keyhook-init-agent-<provider>, build tag <provider>) as Binaries does.
func AgentBinary(dir, provider string) (string, error) {
	bins, err := binaries(dir, "keyhook-init-agent-"+provider)
	if err != nil {
		return "", err
	}
	return bins[0], nil
}

// packages are the commands of keyhook's binaries and their build tags, as
// make build builds them.
var packages = map[string][2]string{
	"keyhook-webhook":          {"./cmd/webhook"},
	"keyhook-controller":       {"./cmd/controller"},
	"keyhook-init-agent":       {"./cmd/init-agent"},
	"keyhook-init-agent-vault": {"./cmd/init-agent", "vault"},
	"keyhook-init-agent-aws":   {"./cmd/init-agent", "aws"},
	"keyhook-init-agent-gcpsm": {"./cmd/init-agent", "gcpsm"},
}

func binaries(dir string, names ...string) ([]string, error) {
	var out []string
	bin := os.Getenv("KEYHOOK_BIN")
	for _, name := range names {
		if bin != "" {
			f := filepath.Join(bin, name)
			if _, err := os.Stat(f); err != nil {
				return nil, fmt.Errorf("KEYHOOK_BIN=%s: %w (run make build)", bin, err)
			}
			out = append(out, f)
			continue
		}
		f := filepath.Join(dir, name)
		if _, err := os.Stat(f); err != nil {
			pkg, ok := packages[name]
			if !ok {
				return nil, fmt.Errorf("no binary %s", name)
			}
			cmd := exec.Command("go", "build", "-tags", pkg[1], "-o", f, pkg[0])
			cmd.Dir = RepoRoot()
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("building %s (tags %q): %v\n%s", pkg[0], pkg[1], err, b)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// mustEnv returns the value of an environment variable that make sets.
func mustEnv(name, hint string) (string, error) {
	v := os.Getenv(name)
	if v == "" {
		return "", fmt.Errorf("$%s is not set: %s", name, hint)
	}
	return v, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
