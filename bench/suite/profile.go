package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	controllerapp "github.com/keyhook/keyhook/internal/app/controller"
	"github.com/keyhook/keyhook/tests/framework"
)

// profileReconciler profiles the reconciler. The controller binary serves no
// pprof endpoint, so the suite runs the same reconcilers in its own process,
// wired by internal/app/controller as cmd/controller is (the
// managed-Secrets-only cache, the cache-first resolver, the shared read
// cache, the rollouts, the policy labeller), against the same API server and
// Vault: a CPU profile of the initial sync of
// SyncExternalSecrets, one of a refresh cycle, and a heap profile after.
func (s *suite) profileReconciler(ctx context.Context) error {
	e := s.env
	if err := e.stopReconciler(); err != nil {
		return err
	}
	if err := s.dropTenant(ctx); err != nil {
		return err
	}
	n := s.cfg.SyncExternalSecrets
	set, err := s.makeSyncSet(ctx, "bench-profile", 1, n, s.cfg.SyncKeys, s.cfg.RefreshInterval)
	if err != nil {
		return err
	}
	mgr, metricsURL, err := s.inProcessReconciler(ctx)
	if err != nil {
		return err
	}

	dir := s.cfg.ProfileDir
	stopCPU, err := startCPUProfile(filepath.Join(dir, "reconciler.initial.cpu.pprof"))
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- mgr.Start(mctx) }()
	stopMgr := func() error {
		cancel()
		return <-done
	}
	if err := s.waitReady(ctx, set, 5*time.Minute); err != nil {
		stopCPU()
		_ = stopMgr()
		return err
	}
	stopCPU()
	logf("profile: in-process initial sync of %d in %s", n, time.Since(start).Round(time.Millisecond))

	mark := time.Now()
	if stopCPU, err = startCPUProfile(filepath.Join(dir, "reconciler.refresh.cpu.pprof")); err != nil {
		_ = stopMgr()
		return err
	}
	err = s.waitRefreshed(ctx, set, metricsURL, mark, 3*s.cfg.RefreshInterval+time.Minute)
	stopCPU()
	if err != nil {
		_ = stopMgr()
		return fmt.Errorf("refresh cycle: %w", err)
	}
	runtime.GC()
	if err := writeHeapProfile(filepath.Join(dir, "reconciler.heap.pprof")); err != nil {
		_ = stopMgr()
		return err
	}
	if err := stopMgr(); err != nil {
		return err
	}
	s.notef("reconciler profiles (in-process, wired as cmd/controller): go tool pprof %s (also reconciler.refresh.cpu.pprof, reconciler.heap.pprof)", filepath.Join(dir, "reconciler.initial.cpu.pprof"))
	return e.deleteNamespace(ctx, set.namespaces[0])
}

// inProcessReconciler is a manager running the controller's reconcilers in
// the suite's own process, wired by internal/app/controller with
// cmd/controller's defaults, so that they can be profiled; its metrics are
// served at metricsURL.
func (s *suite) inProcessReconciler(ctx context.Context) (mgr ctrl.Manager, metricsURL string, err error) {
	e := s.env
	restCfg := rest.CopyConfig(e.cluster.Config)
	restCfg.QPS, restCfg.Burst = -1, 0 // as ctrl.GetConfig in a cluster
	cfg, err := controllerapp.ParseConfig(nil)
	if err != nil {
		return nil, "", err
	}
	opts, err := controllerapp.Options(cfg)
	if err != nil {
		return nil, "", err
	}
	port, err := framework.FreePort()
	if err != nil {
		return nil, "", err
	}
	opts.Metrics = metricsserver.Options{BindAddress: fmt.Sprintf("127.0.0.1:%d", port)}
	opts.HealthProbeBindAddress = "0"
	// The suite may run it more than once in its process.
	opts.Controller = config.Controller{SkipNameValidation: ptr.To(true)}
	mgr, err = ctrl.NewManager(restCfg, opts)
	if err != nil {
		return nil, "", err
	}
	if err := controllerapp.Setup(ctx, mgr, restCfg, cfg); err != nil {
		return nil, "", err
	}
	return mgr, fmt.Sprintf("http://127.0.0.1:%d/metrics", port), nil
}

func startCPUProfile(file string) (stop func(), err error) {
	f, err := os.Create(file)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func writeHeapProfile(file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.WriteHeapProfile(f)
}

// profileScale profiles the reconciler holding the scale run's objects: the
// in-process reconciler starts on the synced ExternalSecrets (a restart:
// informers list everything, every ExternalSecret is reconciled and found
// not due), settles, and its heap is written.
func (s *suite) profileScale(ctx context.Context) error {
	if err := s.env.stopReconciler(); err != nil {
		return err
	}
	mgr, _, err := s.inProcessReconciler(ctx)
	if err != nil {
		return err
	}
	dir := s.cfg.ProfileDir
	stopCPU, err := startCPUProfile(filepath.Join(dir, "scale.restart.cpu.pprof"))
	if err != nil {
		return err
	}
	mctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- mgr.Start(mctx) }()
	if !mgr.GetCache().WaitForCacheSync(ctx) {
		stopCPU()
		return fmt.Errorf("in-process reconciler: caches did not sync")
	}
	time.Sleep(30 * time.Second)
	stopCPU()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if err := writeHeapProfile(filepath.Join(dir, "scale.heap.pprof")); err != nil {
		return err
	}
	cancel()
	if err := <-done; err != nil {
		return err
	}
	s.notef("scale profiles (in-process reconciler restarted on the synced objects): go tool pprof %s (also scale.restart.cpu.pprof); live heap after GC %.0f MiB (the suite's own included)",
		filepath.Join(dir, "scale.heap.pprof"), float64(ms.HeapAlloc)/(1<<20))
	return nil
}
