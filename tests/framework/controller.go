package framework

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Controller is the keyhook-controller binary (sync, rollouts, policy
// labelling, certificate issuance), running as its own ServiceAccount.
type Controller struct {
	Proc       *Process
	MetricsURL string
	name       string
	bin        string
	args       []string
	log        string
	probePort  int
}

// ControllerOptions configure StartController.
type ControllerOptions struct {
	// Binary is the keyhook-controller binary.
	Binary string
	// Args are extra flags.
	Args []string
	// Name names the log file; default keyhook-controller.
	Name string
	// Kubeconfig, when set, replaces the controller's own identity
	// (Cluster.Identity) with another, e.g. the admin's.
	Kubeconfig string
}

// StartController starts the controller as the keyhook-controller
// ServiceAccount, with the RBAC of manifests/, and waits until it is ready.
func StartController(ctx context.Context, c *Cluster, dir string, opts ControllerOptions) (*Controller, error) {
	kubeconfig := opts.Kubeconfig
	if kubeconfig == "" {
		var err error
		if kubeconfig, err = c.Identity(ctx, dir, RoleController); err != nil {
			return nil, fmt.Errorf("the controller's identity: %w", err)
		}
	}
	ctl := &Controller{name: opts.Name, bin: opts.Binary}
	if ctl.name == "" {
		ctl.name = "keyhook-controller"
	}
	var metricsPort int
	for _, p := range []*int{&metricsPort, &ctl.probePort} {
		var err error
		if *p, err = FreePort(); err != nil {
			return nil, err
		}
	}
	ctl.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	ctl.log = filepath.Join(dir, ctl.name+".log")
	ctl.args = append([]string{
		"--kubeconfig=" + kubeconfig,
		"--metrics-bind-address=127.0.0.1:" + itoa(metricsPort),
		"--health-probe-bind-address=127.0.0.1:" + itoa(ctl.probePort),
	}, opts.Args...)
	if err := ctl.Start(ctx); err != nil {
		return nil, err
	}
	return ctl, nil
}

// Start starts (or restarts) the controller process and waits until it is
// ready: its caches synced (a follower of a leader election is ready too).
func (ctl *Controller) Start(ctx context.Context) error {
	var err error
	if ctl.Proc, err = Start(ctl.name, ctl.log, os.Environ(), ctl.bin, ctl.args...); err != nil {
		return err
	}
	return waitReady(ctx, ctl.Proc, ctl.probePort)
}

// Stop stops the controller process.
func (ctl *Controller) Stop() error { return ctl.Proc.Stop(10 * time.Second) }

// Kill kills the process at once, as a node failure would.
func (ctl *Controller) Kill() { ctl.Proc.Kill() }

// waitReady waits until proc's /readyz on probePort answers 200, and stops
// proc if it does not within a minute.
func waitReady(ctx context.Context, proc *Process, probePort int) error {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	readyz := fmt.Sprintf("http://127.0.0.1:%d/readyz", probePort)
	err := WaitFor(wctx, 50*time.Millisecond, func() (bool, error) {
		if proc.Exited() {
			return false, fmt.Errorf("%s exited:\n%s", proc.Name, tail(proc.Output(), 30))
		}
		resp, err := http.Get(readyz)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("readyz: %s", resp.Status)
	})
	if err != nil {
		_ = proc.Stop(5 * time.Second)
		return fmt.Errorf("waiting for %s: %w\n%s", proc.Name, err, tail(proc.Output(), 30))
	}
	return nil
}
