// Package controller wires keyhook's controller role: the ExternalSecret →
// Secret sync, workload rollouts, ClusterInjectionPolicy namespace labelling
// and, with self-managed TLS, the issuance and rotation of the webhook's
// certificate. It is leader-elected and holds keyhook's only rights to write
// Secrets and to create service-account tokens: the RBAC markers below and
// those of pkg/secretsync, pkg/rollout, pkg/policy and pkg/certs make its
// ClusterRole and Role (make manifests).
package controller

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/keyhook/keyhook/internal/app"
	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/certs"
	"github.com/keyhook/keyhook/pkg/policy"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/rollout"
	"github.com/keyhook/keyhook/pkg/secretsync"
	"github.com/keyhook/keyhook/pkg/storehealth"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
)

// RBAC of the role itself, besides what its packages declare: its
// leader-election lease and its events.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// LeaderElectionID names the controller's lease.
const LeaderElectionID = "keyhook.dev"

// Config is everything the controller is told, validated.
type Config struct {
	app.Common
	EnableSync         bool
	EnablePolicy       bool
	RolloutDebounce    time.Duration
	RolloutQuiet       time.Duration
	RolloutProgress    time.Duration
	RolloutStrategy    string
	StoreProbeInterval time.Duration
	ProviderCacheTTL   time.Duration
	ProviderSessionTTL time.Duration
	VersionProbe       time.Duration
	SyncWorkers        int
	LeaderElect        bool
	LeaderElectionNS   string
	LeaseDuration      time.Duration
	RenewDeadline      time.Duration
	RetryPeriod        time.Duration
	// TLSMode is app.TLSModeFiles (nothing to issue) or
	// app.TLSModeSelfManaged (issue and rotate Certs).
	TLSMode string
	// Certs configures self-managed TLS.
	Certs certs.Config

	certSecret, hosts string
}

// ParseConfig parses the controller's flags.
func ParseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("keyhook-controller", flag.ContinueOnError)
	c.BindFlags(fs)
	err := app.ParseFlags(fs, args, c.validate)
	return c, err
}

// BindFlags registers the controller's flags on fs.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	c.Common.BindFlags(fs)
	fs.BoolVar(&c.EnableSync, "enable-sync", true, "run the ExternalSecret → Secret sync and the workload rollouts")
	fs.BoolVar(&c.EnablePolicy, "enable-policy", true, "label namespaces selected by ClusterInjectionPolicies (keyhook.dev/injection) so the webhook entries fail closed where a policy enforces")
	fs.DurationVar(&c.RolloutDebounce, "rollout-debounce", 10*time.Second, "storm guard: a workload rolls at most this long after the first change of a burst, once, with everything that changed meanwhile")
	fs.DurationVar(&c.RolloutQuiet, "rollout-quiet-period", 2*time.Second, "a workload rolls once what it uses has not changed for this long (or at --rollout-debounce)")
	fs.DurationVar(&c.RolloutProgress, "rollout-progress-timeout", 5*time.Minute, "a rollout due while keyhook's previous rollout of the workload is still progressing waits for it, at most this long after the previous one started; 0 never waits")
	fs.StringVar(&c.RolloutStrategy, "rollout-strategy", annotations.StrategyAnnotations, "how a workload is rolled unless its keyhook.dev/rollout-strategy says otherwise: annotations (the pod template's keyhook.dev/secret-hash) or env-vars (the first container's KEYHOOK_SECRET_HASH)")
	fs.DurationVar(&c.StoreProbeInterval, "store-probe-interval", storehealth.DefaultInterval, "how often each SecretStore and ClusterSecretStore is probed (login and capability check, no secret read) for its Ready condition, besides when it is created or changed")
	fs.DurationVar(&c.ProviderCacheTTL, "provider-cache-ttl", 5*time.Minute, "ExternalSecrets of one namespace and store that read the same remote secret within this window share one provider read; never older than an ExternalSecret's own refreshInterval, and a forced sync reads afresh")
	fs.DurationVar(&c.VersionProbe, "version-probe-interval", secretsync.DefaultVersionProbeInterval, "how often the remote version of each key a synced ExternalSecret reads is probed (Vault KV v2 metadata, AWS DescribeSecret / parameter version, Google's latest version; never the value), once per namespace, store and key; a changed version syncs the ExternalSecrets reading it at once, whatever their refreshInterval; 0 disables")
	fs.IntVar(&c.SyncWorkers, "sync-workers", 4, "ExternalSecrets synced at once (each waits mostly on its provider)")
	fs.DurationVar(&c.ProviderSessionTTL, "provider-session-ttl", 5*time.Minute, "the sync's login to a store (Vault token, AWS credentials, Google connection) serves the ExternalSecrets of one namespace for this long; 0 logs in for every sync")
	fs.BoolVar(&c.LeaderElect, "leader-elect", false, "elect a leader among replicas; only the leader reconciles")
	fs.StringVar(&c.LeaderElectionNS, "leader-election-namespace", "", "namespace of the leader-election lease; empty means the pod's")
	fs.DurationVar(&c.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long followers wait before taking over a lease that is not renewed")
	fs.DurationVar(&c.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it steps down")
	fs.DurationVar(&c.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to acquire or renew the lease")
	fs.StringVar(&c.TLSMode, "tls-mode", app.TLSModeFiles, "files (the webhook's certificate comes from elsewhere, e.g. cert-manager: nothing to issue) or self-managed (issue, store in --cert-secret and rotate keyhook's own CA and serving certificate, and keep the caBundle of the webhook configurations current)")
	fs.StringVar(&c.certSecret, "cert-secret", "keyhook-system/keyhook-webhook-tls", "self-managed TLS: namespace/name of the Secret holding the CA and the serving certificate (RBAC in manifests/ names it)")
	fs.StringVar(&c.Certs.WebhookConfiguration, "webhook-configuration", "keyhook", "self-managed TLS: name of the Mutating- and ValidatingWebhookConfiguration whose caBundle keyhook keeps current (RBAC in manifests/ names it)")
	fs.StringVar(&c.hosts, "webhook-service", "keyhook-webhook.keyhook-system.svc,keyhook-webhook.keyhook-system.svc.cluster.local", "self-managed TLS: comma-separated DNS names and IP addresses of the webhook Service, which the serving certificate is for")
	fs.DurationVar(&c.Certs.CAValidity, "ca-validity", certs.DefaultCAValidity, "self-managed TLS: lifetime of a CA")
	fs.DurationVar(&c.Certs.CARenewBefore, "ca-renew-before", 0, "self-managed TLS: a CA with less than this left is replaced (the old one stays trusted until it expires); 0 means a third of --ca-validity")
	fs.DurationVar(&c.Certs.CertValidity, "cert-validity", certs.DefaultCertValidity, "self-managed TLS: lifetime of a serving certificate")
	fs.DurationVar(&c.Certs.CertRenewBefore, "cert-renew-before", 0, "self-managed TLS: a serving certificate with less than this left is renewed; 0 means a third of --cert-validity")
}

func (c *Config) validate() []error {
	var errs []error
	switch c.TLSMode {
	case app.TLSModeFiles:
		c.Certs = certs.Config{} // unused: keep it from looking configured
	case app.TLSModeSelfManaged:
		c.Certs.Secret = certs.ParseSecretRef(c.certSecret)
		for _, h := range strings.Split(c.hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				c.Certs.Hosts = append(c.Certs.Hosts, h)
			}
		}
		c.Certs = c.Certs.WithDefaults()
		errs = append(errs, c.Certs.Validate())
	default:
		errs = append(errs, fmt.Errorf("--tls-mode %q is not %s or %s", c.TLSMode, app.TLSModeFiles, app.TLSModeSelfManaged))
	}
	if c.LeaderElect && !(c.RetryPeriod > 0 && c.RetryPeriod < c.RenewDeadline && c.RenewDeadline < c.LeaseDuration) {
		errs = append(errs, fmt.Errorf("leader election needs 0 < --leader-elect-retry-period (%s) < --leader-elect-renew-deadline (%s) < --leader-elect-lease-duration (%s)", c.RetryPeriod, c.RenewDeadline, c.LeaseDuration))
	}
	if c.SyncWorkers < 1 {
		errs = append(errs, fmt.Errorf("--sync-workers %d must be at least 1", c.SyncWorkers))
	}
	if c.VersionProbe < 0 {
		errs = append(errs, fmt.Errorf("--version-probe-interval %s must not be negative (0 disables the probes)", c.VersionProbe))
	}
	if c.ProviderSessionTTL < 0 {
		errs = append(errs, fmt.Errorf("--provider-session-ttl %s must not be negative", c.ProviderSessionTTL))
	}
	if c.StoreProbeInterval <= 0 {
		errs = append(errs, fmt.Errorf("--store-probe-interval %s must be positive", c.StoreProbeInterval))
	}
	if c.RolloutDebounce < 0 || c.RolloutQuiet < 0 || c.RolloutProgress < 0 {
		errs = append(errs, fmt.Errorf("--rollout-debounce %s, --rollout-quiet-period %s and --rollout-progress-timeout %s must not be negative", c.RolloutDebounce, c.RolloutQuiet, c.RolloutProgress))
	}
	if c.RolloutStrategy != annotations.StrategyAnnotations && c.RolloutStrategy != annotations.StrategyEnvVars {
		errs = append(errs, fmt.Errorf("--rollout-strategy %q is not %s or %s", c.RolloutStrategy, annotations.StrategyAnnotations, annotations.StrategyEnvVars))
	}
	return errs
}

// Options are the controller manager's options. bench/suite adjusts them
// (no metrics server, no name validation) to run the same wiring in its
// own process.
func Options(cfg Config) (ctrl.Options, error) {
	scheme, err := app.Scheme()
	if err != nil {
		return ctrl.Options{}, err
	}
	return ctrl.Options{
		Scheme: scheme,
		Cache: cache.Options{
			// Nothing the controller does reads managedFields or kubectl's
			// copy of the last applied object, and everything it writes
			// from the cache but Secrets is a patch computed from the
			// cached copy, which the stripped fields are not part of.
			DefaultTransform: StripForCache,
			ByObject: map[client.Object]cache.ByObject{
				// Only Secrets keyhook manages are cached, so memory does not
				// grow with the cluster's other Secrets; and of those a
				// digest of the data, not the values (secretsync.StripSecretData).
				&corev1.Secret{}: {
					Label:     labels.SelectorFromSet(labels.Set{annotations.Managed: "true"}),
					Transform: secretsync.StripSecretData,
				},
			},
		},
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		LeaderElection:          cfg.LeaderElect,
		LeaderElectionID:        LeaderElectionID,
		LeaderElectionNamespace: cfg.LeaderElectionNS,
		LeaseDuration:           &cfg.LeaseDuration,
		RenewDeadline:           &cfg.RenewDeadline,
		RetryPeriod:             &cfg.RetryPeriod,
		// Hand over at once on SIGTERM instead of after the lease expires.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &cfg.GracefulShutdown,
	}, nil
}

// lastAppliedKey is kubectl's annotation holding a copy of the object as
// last applied: for a big workload, as much again as its spec.
const lastAppliedKey = "kubectl.kubernetes.io/last-applied-configuration"

var _ toolscache.TransformFunc = StripForCache

// StripForCache is the transform of the controller's caches but the
// Secrets': an object loses its managedFields and kubectl's
// last-applied-configuration, which often outweigh the rest of an
// ExternalSecret or a namespace.
func StripForCache(obj any) (any, error) {
	o, err := meta.Accessor(obj)
	if err != nil {
		return obj, nil // a tombstone or not an object: nothing to strip
	}
	// Nil-checked, as controller-runtime's TransformStripManagedFields does
	// (kubernetes/kubernetes#124337).
	if o.GetManagedFields() != nil {
		o.SetManagedFields(nil)
	}
	// The informer hands over the decoded object, safe to change in
	// place; an unstructured object's annotations are a copy, set back.
	if ann := o.GetAnnotations(); ann != nil {
		if _, ok := ann[lastAppliedKey]; ok {
			delete(ann, lastAppliedKey)
			o.SetAnnotations(ann)
		}
	}
	return obj, nil
}

// Setup adds the controller's reconcilers, metrics and probes to mgr.
func Setup(ctx context.Context, mgr ctrl.Manager, restCfg *rest.Config, cfg Config) error {
	if cfg.TLSMode == app.TLSModeSelfManaged {
		certCache, err := certs.NewCache(ctx, restCfg, mgr.GetScheme(), cfg.Certs)
		if err != nil {
			return err
		}
		if err := mgr.Add(certCache); err != nil {
			return err
		}
		if err := (&certs.Reconciler{
			Client:    mgr.GetClient(),
			Cache:     certCache,
			APIReader: mgr.GetAPIReader(),
			Config:    cfg.Certs,
			Clock:     clock.RealClock{},
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up self-managed TLS: %w", err)
		}
	}
	if cfg.EnableSync {
		if err := app.Register(metrics.Registry, append(secretsync.Metrics(), rollout.Metrics()...)...); err != nil {
			return err
		}
		clientset, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return err
		}
		resolver := &resolve.Resolver{
			Reader: resolve.CacheFirst{Cache: mgr.GetCache(), Live: mgr.GetAPIReader()},
			Rules:  cfg.Rules(),
		}
		reads := secretsync.NewReadCache(cfg.ProviderCacheTTL, clock.RealClock{})
		reads.SessionTTL = cfg.ProviderSessionTTL
		reads.Log = mgr.GetLogger().WithName("provider-sessions")
		// Retires expired sessions and, when the manager stops, closes them
		// all (revoking their Vault tokens).
		if err := mgr.Add(reads); err != nil {
			return err
		}
		providers := secretsync.Providers(clientset, mgr.GetAPIReader())
		var versions *secretsync.VersionProber
		if cfg.VersionProbe > 0 {
			if err := app.Register(metrics.Registry, secretsync.ProbeMetrics()...); err != nil {
				return err
			}
			versions = secretsync.NewVersionProber(cfg.VersionProbe, clock.RealClock{})
			versions.Resolver, versions.Providers, versions.Reads, versions.Workers = resolver, providers, reads, cfg.SyncWorkers
			if err := mgr.Add(versions); err != nil {
				return err
			}
		}
		if err := (&secretsync.Reconciler{
			Client:    mgr.GetClient(),
			APIReader: mgr.GetAPIReader(),
			Resolver:  resolver,
			Providers: providers,
			Reads:     reads,
			Workers:   cfg.SyncWorkers,
			Recorder:  mgr.GetEventRecorder("keyhook"),
			Clock:     clock.RealClock{},
			Versions:  versions,
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the sync: %w", err)
		}
		if err := storehealth.Setup(mgr, storehealth.Config{Rules: resolver.Rules, Providers: providers, Interval: cfg.StoreProbeInterval, Registerer: app.TolerantRegisterer{Registerer: metrics.Registry}}); err != nil {
			return err
		}
		if err := rollout.Setup(mgr, restCfg, rollout.Config{
			Timing:          rollout.Timing{Quiet: cfg.RolloutQuiet, Debounce: cfg.RolloutDebounce},
			ProgressTimeout: cfg.RolloutProgress,
			Strategy:        cfg.RolloutStrategy,
		}); err != nil {
			return fmt.Errorf("setting up rollouts: %w", err)
		}
	}
	if cfg.EnablePolicy {
		if err := (&policy.NamespaceLabeler{
			Client: mgr.GetClient(), Pods: mgr.GetAPIReader(),
			ExemptNamespaces: []string{metav1.NamespaceSystem, webhookconfig.Defaults().OwnNamespace},
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the namespace labeller: %w", err)
		}
	}
	return app.AddProbes(mgr)
}

// Run runs the controller until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	restCfg, err := app.RestConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	opts, err := Options(cfg)
	if err != nil {
		return err
	}
	mgr, err := ctrl.NewManager(restCfg, opts)
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}
	if err := Setup(ctx, mgr, restCfg, cfg); err != nil {
		return err
	}
	logger := ctrl.Log.WithName("setup")
	if cfg.LeaderElect {
		go func() {
			select {
			case <-mgr.Elected():
				logger.Info("elected leader: reconcilers running")
			case <-ctx.Done():
			}
		}()
	}
	logger.Info("starting the controller", "tlsMode", cfg.TLSMode, "sync", cfg.EnableSync, "policy", cfg.EnablePolicy, "leaderElect", cfg.LeaderElect)
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
