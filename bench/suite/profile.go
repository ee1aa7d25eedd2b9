package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/rollout"
	"github.com/keyhook/keyhook/pkg/secretsync"
	"github.com/keyhook/keyhook/pkg/tenancy"
	"github.com/keyhook/keyhook/tests/framework"
)

// profileReconciler profiles the reconciler. The webhook binary serves no
// pprof endpoint, so the suite runs the same reconcilers in its own process,
// wired as cmd/webhook wires them (the managed-Secrets-only cache, the
// cache-first resolver, the shared read cache, the rollouts), against the
// same API server and Vault: a CPU profile of the initial sync of
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
	mgr, err := s.inProcessReconciler()
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
	wctx, wcancel := context.WithTimeout(ctx, 3*s.cfg.RefreshInterval+time.Minute)
	err = framework.WaitFor(wctx, 500*time.Millisecond, func() (bool, error) {
		_, refreshed, err := s.readiness(wctx, set, mark)
		return err == nil && refreshed == set.total(), err
	})
	wcancel()
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
	s.notef("reconciler profiles (in-process, wired as cmd/webhook): go tool pprof %s (also reconciler.refresh.cpu.pprof, reconciler.heap.pprof)", filepath.Join(dir, "reconciler.initial.cpu.pprof"))
	return e.deleteNamespace(ctx, set.namespaces[0])
}

// inProcessReconciler is a manager running the reconcilers of cmd/webhook,
// wired as cmd/webhook wires them, in the suite's own process, so that they
// can be profiled.
func (s *suite) inProcessReconciler() (ctrl.Manager, error) {
	e := s.env
	restCfg := rest.CopyConfig(e.cluster.Config)
	restCfg.QPS, restCfg.Burst = -1, 0 // as ctrl.GetConfig in a cluster
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme: e.cluster.Scheme,
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{annotations.Managed: "true"})},
		}},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		// The suite may run it more than once in its process.
		Controller: config.Controller{SkipNameValidation: ptr.To(true)},
	})
	if err != nil {
		return nil, err
	}
	clientset, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	resolver := &resolve.Resolver{
		Reader: resolve.CacheFirst{Cache: mgr.GetCache(), Live: mgr.GetAPIReader()},
		Rules:  tenancy.Rules{PermittedKeyAnnotation: tenancy.DefaultPermittedKeyAnnotation, PermittedRoleAnnotation: tenancy.DefaultPermittedRoleAnnotation},
	}
	// cmd/webhook's defaults: --provider-cache-ttl 5m,
	// --provider-session-ttl 5m, --sync-workers 4.
	reads := secretsync.NewReadCache(5*time.Minute, clock.RealClock{})
	reads.SessionTTL = 5 * time.Minute
	// As cmd/webhook: expired sessions and, at the stop, all are revoked.
	if err := mgr.Add(reads); err != nil {
		return nil, err
	}
	if err := (&secretsync.Reconciler{
		Client: mgr.GetClient(), APIReader: mgr.GetAPIReader(), Resolver: resolver,
		Providers: secretsync.Providers(clientset, mgr.GetAPIReader()),
		Reads:     reads, Workers: 4,
		Recorder: mgr.GetEventRecorder("keyhook"), Clock: clock.RealClock{},
	}).SetupWithManager(mgr); err != nil {
		return nil, err
	}
	// cmd/webhook's defaults.
	if err := rollout.Setup(mgr, restCfg, rollout.Config{
		Timing:          rollout.Timing{Quiet: 2 * time.Second, Debounce: 10 * time.Second},
		ProgressTimeout: 5 * time.Minute,
		Strategy:        "annotations",
	}); err != nil {
		return nil, err
	}

	return mgr, nil
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
	mgr, err := s.inProcessReconciler()
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
