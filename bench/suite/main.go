// Command suite is `make bench`: it builds nothing itself (make does), starts
// what it needs — the control plane and Vault of the test environment, the
// keyhook webhook with TLS, the reconciler — runs every benchmark of issue 6
// a few times, prints one markdown table (median, min–max, target,
// pass/short) and writes it to bench/results.md with the machine's nproc and
// Go version. It stops everything it started.
//
//	make bench                 # the suite, about 5 minutes on 2 cores
//	make bench-scale           # adds 10,000 ExternalSecrets and 50,000 Secrets (~8 minutes more)
//	BENCH_PROFILE=dir make bench   # also writes CPU and heap profiles
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/keyhook/keyhook/tests/framework"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Config of the suite.
type Config struct {
	Out        string
	Runs       int
	Count      int // go test -count of the in-process benchmarks
	ProfileDir string
	Scale      bool
	Only       string // comma-separated step names; empty runs all
	Keep       bool

	SingleDuration, ConcDuration, Warmup time.Duration
	Concurrency                          int
	PodCreates                           int
	AgentSecrets                         int
	SyncExternalSecrets, SyncKeys        int
	RolloutKeys, RolloutRounds           int
	QuietIntervals                       int
	RefreshInterval                      time.Duration
	ScaleExternalSecrets, ScaleKeys      int
	ScaleSecrets, ScaleNamespaces        int
	ScaleConfigMaps                      int
}

func parseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&c.Out, "out", "bench/results.md", "file the table is written to; empty writes none")
	fs.IntVar(&c.Runs, "runs", 3, "runs of each measurement; the table shows their median")
	fs.IntVar(&c.Count, "count", 5, "go test -count of the in-process benchmarks")
	fs.StringVar(&c.ProfileDir, "profile", os.Getenv("BENCH_PROFILE"), "directory for CPU and heap profiles of the admission path and the reconciler (default $BENCH_PROFILE); empty writes none")
	fs.BoolVar(&c.Scale, "scale", false, "also run the scale benchmarks: initial sync of 10,000 ExternalSecrets and reconciler RSS with 50,000 other Secrets")
	fs.BoolVar(&c.Keep, "keep", false, "keep the logs of the processes started (they are kept anyway when the suite fails)")
	fs.StringVar(&c.Only, "only", "", "run only these steps (comma-separated): inprocess, tls, apiserver, agent, sync, rollout, profile, scale")
	fs.DurationVar(&c.SingleDuration, "single-duration", 8*time.Second, "measured time of each single-stream run")
	fs.DurationVar(&c.ConcDuration, "conc-duration", 10*time.Second, "measured time of each concurrent run")
	fs.DurationVar(&c.Warmup, "warmup", 2*time.Second, "unmeasured warm-up before each load run")
	fs.IntVar(&c.Concurrency, "concurrency", 32, "streams of the concurrent load run")
	fs.IntVar(&c.PodCreates, "pod-creates", 60, "pods created per run and phase of the API server benchmark")
	fs.IntVar(&c.AgentSecrets, "agent-secrets", 10, "ExternalSecrets the init-agent fetches")
	fs.IntVar(&c.SyncExternalSecrets, "sync-externalsecrets", 200, "ExternalSecrets of the sync benchmark")
	fs.IntVar(&c.SyncKeys, "sync-keys", 50, "distinct Vault secrets they read")
	fs.IntVar(&c.RolloutKeys, "rollout-keys", 12, "rollout step: Vault keys, each read by an ExternalSecret (refreshInterval 1h) whose Secret a Deployment follows")
	fs.IntVar(&c.RolloutRounds, "rollout-rounds", 2, "rollout step: rounds of writing every key; the write → new ReplicaSet p95 is over rounds × keys writes")
	fs.IntVar(&c.QuietIntervals, "quiet-intervals", 3, "rollout step: probe intervals (15s) of nothing changing over which value reads are counted")
	fs.DurationVar(&c.RefreshInterval, "refresh-interval", 20*time.Second, "refreshInterval of the steady-state ExternalSecrets")
	fs.IntVar(&c.ScaleExternalSecrets, "scale-externalsecrets", 10000, "ExternalSecrets of the scale run")
	fs.IntVar(&c.ScaleKeys, "scale-keys", 1000, "distinct Vault secrets of the scale run")
	fs.IntVar(&c.ScaleSecrets, "scale-secrets", 50000, "unrelated Secrets in the cluster during the scale run")
	fs.IntVar(&c.ScaleConfigMaps, "scale-configmaps", 20000, "unrelated ConfigMaps in the cluster during the scale run (the rollouts follow every Secret and ConfigMap)")
	fs.IntVar(&c.ScaleNamespaces, "scale-namespaces", 10, "namespaces the scale run spreads its ExternalSecrets over")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var errs []error
	if c.Runs < 1 || c.Count < 1 {
		errs = append(errs, fmt.Errorf("-runs %d and -count %d must be positive", c.Runs, c.Count))
	}
	if c.SyncKeys < 1 || c.SyncKeys > c.SyncExternalSecrets || c.ScaleKeys < c.ScaleNamespaces || c.ScaleKeys > c.ScaleExternalSecrets {
		errs = append(errs, errors.New("each run needs at least one key, at most one per ExternalSecret, and the scale run one per namespace"))
	}
	if c.RolloutKeys < 2 || c.RolloutRounds < 1 || c.QuietIntervals < 1 {
		errs = append(errs, fmt.Errorf("-rollout-keys %d must be at least 2, -rollout-rounds %d and -quiet-intervals %d at least 1", c.RolloutKeys, c.RolloutRounds, c.QuietIntervals))
	}
	if c.RefreshInterval < 5*time.Second {
		errs = append(errs, fmt.Errorf("-refresh-interval %s is shorter than a sync; use at least 5s", c.RefreshInterval))
	}
	return c, errors.Join(errs...)
}

func (c Config) step(name string) bool {
	if c.Only == "" {
		return name != "scale" || c.Scale
	}
	for _, s := range strings.Split(c.Only, ",") {
		if strings.TrimSpace(s) == name {
			return true
		}
	}
	return false
}

// suite is the state of one `make bench`.
type suite struct {
	cfg           Config
	dir           string // logs and scratch
	webhookBin    string
	controllerBin string
	agentBin      string
	// agentVaultBin is the init-agent built with the vault tag only
	// (keyhook-init-agent-vault): the image a Vault-only cluster runs.
	agentVaultBin string
	env           *environment
	figures       []*figure
	notes         []string
	// tenantNS holds the fixture's store and ExternalSecrets, once made.
	tenantNS string
}

func (s *suite) add(f *figure) *figure {
	s.figures = append(s.figures, f)
	return f
}

func (s *suite) notef(format string, args ...any) {
	n := fmt.Sprintf(format, args...)
	s.notes = append(s.notes, n)
	logf("note: %s", n)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench %s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(args []string) error {
	cfg, err := parseConfig(args)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := os.Chdir(framework.RepoRoot()); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "keyhook-bench-")
	if err != nil {
		return err
	}
	s := &suite{cfg: cfg, dir: dir}
	started := time.Now()
	load := loadAverage()
	if cfg.ProfileDir != "" {
		if cfg.ProfileDir, err = filepath.Abs(cfg.ProfileDir); err != nil {
			return err
		}
		if err := os.MkdirAll(cfg.ProfileDir, 0o755); err != nil {
			return err
		}
	}

	err = s.runSteps(ctx)
	if s.env != nil {
		if serr := s.env.stop(); serr != nil {
			logf("stopping: %v", serr)
		}
	}
	if err != nil || cfg.Keep {
		logf("logs kept in %s", dir)
	} else {
		os.RemoveAll(dir)
	}

	report := s.report(started, load)
	fmt.Println(report)
	if cfg.Out != "" {
		if werr := os.WriteFile(cfg.Out, []byte(report), 0o644); werr != nil {
			return errors.Join(err, werr)
		}
		logf("table written to %s", cfg.Out)
	}
	return err
}

func (s *suite) runSteps(ctx context.Context) error {
	var err error
	if s.webhookBin, s.controllerBin, s.agentBin, err = binaries(s.dir); err != nil {
		return err
	}
	if s.agentVaultBin, err = vaultAgentBinary(s.dir); err != nil {
		return err
	}
	// The in-process benchmark runs first, before anything else loads the cores.
	if s.cfg.step("inprocess") {
		if err := s.inProcess(ctx); err != nil {
			return fmt.Errorf("in-process benchmark: %w", err)
		}
	}
	if s.cfg.step("agent") {
		if err := s.agentSize(); err != nil {
			return err
		}
	}
	needEnv := false
	for _, st := range []string{"tls", "apiserver", "agent", "sync", "rollout", "profile", "scale"} {
		needEnv = needEnv || s.cfg.step(st)
	}
	if !needEnv {
		return nil
	}
	if s.env, err = startEnvironment(ctx, s.dir, s.webhookBin, s.controllerBin); err != nil {
		return fmt.Errorf("starting the environment: %w", err)
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"tls", s.tls},
		{"apiserver", s.apiserver},
		{"agent", s.agent},
		{"sync", s.sync},
		{"rollout", s.rollout},
		{"profile", s.profileReconciler},
		{"scale", s.scale},
	}
	for _, st := range steps {
		if !s.cfg.step(st.name) || (st.name == "profile" && s.cfg.ProfileDir == "") {
			continue
		}
		logf("step %s", st.name)
		if err := st.fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", st.name, err)
		}
	}
	return nil
}

// binaries are the webhook, controller and init-agent binaries:
// $KEYHOOK_BIN when make built them, else built here the way make build does
// (static, stripped), so that the size figures are the release binaries'.
func binaries(dir string) (webhook, controller, agent string, err error) {
	if os.Getenv("KEYHOOK_BIN") != "" {
		if webhook, agent, err = framework.Binaries(dir); err != nil {
			return "", "", "", err
		}
		controller, err = framework.ControllerBinary(dir)
		return webhook, controller, agent, err
	}
	webhook, controller, agent = filepath.Join(dir, "keyhook-webhook"), filepath.Join(dir, "keyhook-controller"), filepath.Join(dir, "keyhook-init-agent")
	for out, pkg := range map[string]string{webhook: "./cmd/webhook", controller: "./cmd/controller", agent: "./cmd/init-agent"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", "", "", fmt.Errorf("building %s: %v\n%s", pkg, err, b)
		}
	}
	return webhook, controller, agent, nil
}

// vaultAgentBinary is the Vault-only init-agent: $KEYHOOK_BIN's when make
// built it, else built here the way make build does.
func vaultAgentBinary(dir string) (string, error) {
	if os.Getenv("KEYHOOK_BIN") != "" {
		return framework.AgentBinary(dir, "vault")
	}
	out := filepath.Join(dir, "keyhook-init-agent-vault")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-tags", "vault", "-o", out, "./cmd/init-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the Vault init-agent: %v\n%s", err, b)
	}
	return out, nil
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "?"
}

func gitCommit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func (s *suite) report(started time.Time, load string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# keyhook benchmarks\n\n")
	target := "make bench"
	if s.cfg.Scale {
		target = "make bench-scale"
	}
	fmt.Fprintf(&b, "`%s` (bench/suite %s) of %s, commit %s, %s.\n\n", target, strings.Join(os.Args[1:], " "), started.UTC().Format("2006-01-02 15:04 MST"), gitCommit(), time.Since(started).Round(time.Second))
	fmt.Fprintf(&b, "- nproc: %d (%s)\n- go: %s %s/%s\n- load average before the run: %s\n", runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH, load)
	fmt.Fprintf(&b, "- median of %d runs unless the runs column says otherwise; in-process benchmarks: go test -count %d\n\n", s.cfg.Runs, s.cfg.Count)
	b.WriteString(markdown(s.figures))
	if len(s.notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range s.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}
