// Command webhook is keyhook's one server binary: the TLS mutating admission
// webhook that injects the init-agent, with metrics and health probes. Flags
// select which parts run, so the webhook can scale out on its own.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	// TLS roots compiled in, for Vault, AWS and Google: the images have no
	// CA file (pkg/imagebuild refuses a binary without them). A CA file or
	// SSL_CERT_FILE in the container still takes precedence.
	_ "golang.org/x/crypto/x509roots/fallback"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/certs"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/policy"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/rollout"
	"github.com/keyhook/keyhook/pkg/secretsync"
	"github.com/keyhook/keyhook/pkg/storehealth"
	"github.com/keyhook/keyhook/pkg/tenancy"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keyhook-webhook:", err)
		os.Exit(1)
	}
}

// Config is everything the webhook binary is told, validated.
type Config struct {
	Kubeconfig           string
	WebhookHost          string
	WebhookPort          int
	CertDir              string
	MetricsAddr          string
	ProbeAddr            string
	AgentImage           string
	AgentImagePullPolicy string
	AgentDeadline        time.Duration
	EnableWebhook        bool
	EnableSync           bool
	RolloutDebounce      time.Duration
	RolloutQuiet         time.Duration
	RolloutProgressWait  time.Duration
	RolloutStrategy      string
	ProviderCacheTTL     time.Duration
	ProviderSessionTTL   time.Duration
	SyncWorkers          int
	StoreProbeInterval   time.Duration
	LeaderElect          bool
	LeaderElectionNS     string
	LeaseDuration        time.Duration
	RenewDeadline        time.Duration
	RetryPeriod          time.Duration
	GracefulShutdown     time.Duration
	EnablePolicy         bool
	PermittedKeyAnn      string
	PermittedRoleAnn     string
	// TLSMode is TLSModeFiles or TLSModeSelfManaged.
	TLSMode string
	// Certs configures self-managed TLS.
	Certs certs.Config
}

// TLS modes (--tls-mode).
const (
	// TLSModeFiles serves tls.crt and tls.key of --cert-dir, reloaded when
	// they change: a Secret mounted there by cert-manager, or any files.
	TLSModeFiles = "files"
	// TLSModeSelfManaged issues and rotates keyhook's own CA and serving
	// certificate (pkg/certs).
	TLSModeSelfManaged = "self-managed"
)

func parseConfig(args []string) (Config, *zap.Options, error) {
	var c Config
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster or $KUBECONFIG")
	fs.StringVar(&c.WebhookHost, "webhook-host", "", "address the webhook server listens on; empty means all")
	fs.IntVar(&c.WebhookPort, "webhook-port", 9443, "port of the TLS webhook server")
	fs.StringVar(&c.CertDir, "cert-dir", "/etc/keyhook/tls", "directory holding tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.StringVar(&c.AgentImage, "agent-image", "ghcr.io/keyhook/init-agent:latest", "image of the init-agent injected into pods")
	fs.StringVar(&c.AgentImagePullPolicy, "agent-image-pull-policy", string(corev1.PullIfNotPresent), "pull policy of the init-agent image: Always, IfNotPresent or Never")
	fs.DurationVar(&c.AgentDeadline, "agent-deadline", 2*time.Minute, "how long the init-agent retries before it fails the pod")
	fs.BoolVar(&c.EnableWebhook, "enable-webhook", true, "serve the pod-injection admission webhook")
	fs.BoolVar(&c.EnableSync, "enable-sync", true, "run the ExternalSecret → Secret sync and the workload rollouts (leader-elected when --leader-elect)")
	fs.DurationVar(&c.RolloutDebounce, "rollout-debounce", 10*time.Second, "storm guard: a workload rolls at most this long after the first change of a burst, once, with everything that changed meanwhile")
	fs.DurationVar(&c.RolloutQuiet, "rollout-quiet-period", 2*time.Second, "a workload rolls once what it uses has not changed for this long (or at --rollout-debounce)")
	fs.DurationVar(&c.RolloutProgressWait, "rollout-progress-timeout", 5*time.Minute, "a rollout due while keyhook's previous rollout of the workload is still progressing waits for it, at most this long after the previous one started; 0 never waits")
	fs.StringVar(&c.RolloutStrategy, "rollout-strategy", annotations.StrategyAnnotations, "how a workload is rolled unless its keyhook.dev/rollout-strategy says otherwise: annotations (the pod template's keyhook.dev/secret-hash) or env-vars (the first container's KEYHOOK_SECRET_HASH)")
	fs.DurationVar(&c.ProviderCacheTTL, "provider-cache-ttl", 5*time.Minute, "ExternalSecrets of one namespace and store that read the same remote secret within this window share one provider read; never older than an ExternalSecret's own refreshInterval, and a forced sync reads afresh")
	fs.IntVar(&c.SyncWorkers, "sync-workers", 4, "ExternalSecrets synced at once (each waits mostly on its provider)")
	fs.DurationVar(&c.ProviderSessionTTL, "provider-session-ttl", 5*time.Minute, "the sync's login to a store (Vault token, AWS credentials, Google connection) serves the ExternalSecrets of one namespace for this long; 0 logs in for every sync")
	fs.DurationVar(&c.StoreProbeInterval, "store-probe-interval", storehealth.DefaultInterval, "how often each SecretStore and ClusterSecretStore is probed (login and capability check, no secret read) for its Ready condition, besides when it is created or changed")
	fs.BoolVar(&c.LeaderElect, "leader-elect", false, "elect a leader among replicas for the parts that need one")
	fs.StringVar(&c.LeaderElectionNS, "leader-election-namespace", "", "namespace of the leader-election lease; empty means the pod's")
	fs.DurationVar(&c.LeaseDuration, "leader-elect-lease-duration", 15*time.Second, "how long followers wait before taking over a lease that is not renewed")
	fs.DurationVar(&c.RenewDeadline, "leader-elect-renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it steps down")
	fs.DurationVar(&c.RetryPeriod, "leader-elect-retry-period", 2*time.Second, "how often candidates try to acquire or renew the lease")
	fs.DurationVar(&c.GracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "how long in-flight requests may take after SIGTERM")
	fs.BoolVar(&c.EnablePolicy, "enable-policy", true, "label namespaces selected by ClusterInjectionPolicies (keyhook.dev/injection) so the webhook entries fail closed where a policy enforces (leader-elected when --leader-elect)")
	fs.StringVar(&c.PermittedKeyAnn, "permitted-key-annotation", tenancy.DefaultPermittedKeyAnnotation, "namespace annotation holding a regular expression that every remote key its ExternalSecrets read must match; empty turns the check off")
	fs.StringVar(&c.PermittedRoleAnn, "permitted-role-annotation", tenancy.DefaultPermittedRoleAnnotation, "namespace annotation holding a regular expression that every AWS role its stores use must match; empty turns the check off")
	fs.StringVar(&c.TLSMode, "tls-mode", TLSModeFiles, "where the serving certificate comes from: files (tls.crt and tls.key in --cert-dir, e.g. from cert-manager) or self-managed (keyhook issues, stores in --cert-secret and rotates its own CA and certificate, and keeps the caBundle of its webhook configurations current)")
	var certSecret, hosts string
	fs.StringVar(&certSecret, "cert-secret", "keyhook-system/keyhook-webhook-tls", "self-managed TLS: namespace/name of the Secret holding the CA and the serving certificate (RBAC in manifests/ names it)")
	fs.StringVar(&c.Certs.WebhookConfiguration, "webhook-configuration", "keyhook", "self-managed TLS: name of the Mutating- and ValidatingWebhookConfiguration whose caBundle keyhook keeps current (RBAC in manifests/ names it)")
	fs.StringVar(&hosts, "webhook-service", "keyhook-webhook.keyhook-system.svc,keyhook-webhook.keyhook-system.svc.cluster.local", "self-managed TLS: comma-separated DNS names and IP addresses of the webhook Service, which the serving certificate is for")
	fs.DurationVar(&c.Certs.CAValidity, "ca-validity", certs.DefaultCAValidity, "self-managed TLS: lifetime of a CA")
	fs.DurationVar(&c.Certs.CARenewBefore, "ca-renew-before", 0, "self-managed TLS: a CA with less than this left is replaced (the old one stays trusted until it expires); 0 means a third of --ca-validity")
	fs.DurationVar(&c.Certs.CertValidity, "cert-validity", certs.DefaultCertValidity, "self-managed TLS: lifetime of a serving certificate")
	fs.DurationVar(&c.Certs.CertRenewBefore, "cert-renew-before", 0, "self-managed TLS: a serving certificate with less than this left is renewed; 0 means a third of --cert-validity")
	zapOpts := &zap.Options{}
	zapOpts.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return c, nil, err
	}
	var errs []error
	switch c.TLSMode {
	case TLSModeFiles:
		c.Certs = certs.Config{} // unused: keep it from looking configured
	case TLSModeSelfManaged:
		c.Certs.Secret = certs.ParseSecretRef(certSecret)
		for _, h := range strings.Split(hosts, ",") {
			if h = strings.TrimSpace(h); h != "" {
				c.Certs.Hosts = append(c.Certs.Hosts, h)
			}
		}
		c.Certs = c.Certs.WithDefaults()
		errs = append(errs, c.Certs.Validate())
	default:
		errs = append(errs, fmt.Errorf("--tls-mode %q is not %s or %s", c.TLSMode, TLSModeFiles, TLSModeSelfManaged))
	}
	if c.AgentImage == "" {
		errs = append(errs, errors.New("--agent-image must not be empty"))
	}
	switch corev1.PullPolicy(c.AgentImagePullPolicy) {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("--agent-image-pull-policy %q is not Always, IfNotPresent or Never", c.AgentImagePullPolicy))
	}
	if c.AgentDeadline <= 0 {
		errs = append(errs, fmt.Errorf("--agent-deadline %s must be positive", c.AgentDeadline))
	}
	if c.LeaderElect && !(c.RetryPeriod > 0 && c.RetryPeriod < c.RenewDeadline && c.RenewDeadline < c.LeaseDuration) {
		errs = append(errs, fmt.Errorf("leader election needs 0 < --leader-elect-retry-period (%s) < --leader-elect-renew-deadline (%s) < --leader-elect-lease-duration (%s)", c.RetryPeriod, c.RenewDeadline, c.LeaseDuration))
	}
	if c.SyncWorkers < 1 {
		errs = append(errs, fmt.Errorf("--sync-workers %d must be at least 1", c.SyncWorkers))
	}
	if c.StoreProbeInterval <= 0 {
		errs = append(errs, fmt.Errorf("--store-probe-interval %s must be positive", c.StoreProbeInterval))
	}
	if c.ProviderSessionTTL < 0 {
		errs = append(errs, fmt.Errorf("--provider-session-ttl %s must not be negative", c.ProviderSessionTTL))
	}
	if c.RolloutDebounce < 0 || c.RolloutQuiet < 0 || c.RolloutProgressWait < 0 {
		errs = append(errs, fmt.Errorf("--rollout-debounce %s, --rollout-quiet-period %s and --rollout-progress-timeout %s must not be negative", c.RolloutDebounce, c.RolloutQuiet, c.RolloutProgressWait))
	}
	if c.RolloutStrategy != annotations.StrategyAnnotations && c.RolloutStrategy != annotations.StrategyEnvVars {
		errs = append(errs, fmt.Errorf("--rollout-strategy %q is not %s or %s", c.RolloutStrategy, annotations.StrategyAnnotations, annotations.StrategyEnvVars))
	}
	if c.WebhookPort <= 0 || c.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port %d is not a port", c.WebhookPort))
	}
	return c, zapOpts, errors.Join(errs...)
}

func run(args []string) error {
	cfg, zapOpts, err := parseConfig(args)
	if err != nil {
		return err
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(zapOpts)))
	logger := ctrl.Log.WithName("setup")

	restCfg, err := restConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return err
	}

	ctx := ctrl.SetupSignalHandler()
	webhookOpts := webhook.Options{
		Host:     cfg.WebhookHost,
		Port:     cfg.WebhookPort,
		CertDir:  cfg.CertDir,
		CertName: "tls.crt",
		KeyName:  "tls.key",
	}
	var certCache *certs.Cache
	var serving *certs.ServingCert
	if cfg.TLSMode == TLSModeSelfManaged {
		if certCache, err = certs.NewCache(ctx, restCfg, scheme, cfg.Certs); err != nil {
			return err
		}
		serving = &certs.ServingCert{Reader: certCache, Secret: cfg.Certs.Secret, Log: ctrl.Log.WithName("certs")}
		// With GetCertificate set, the server does not read --cert-dir.
		webhookOpts.CertDir = ""
		webhookOpts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = serving.GetCertificate }}
	}
	webhookServer := webhook.NewServer(webhookOpts)
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme: scheme,
		// Only Secrets keyhook manages are cached: memory does not grow with
		// the cluster's other Secrets.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{annotations.Managed: "true"})},
		}},
		WebhookServer:           webhookServer,
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		LeaderElection:          cfg.LeaderElect,
		LeaderElectionID:        "keyhook.dev",
		LeaderElectionNamespace: cfg.LeaderElectionNS,
		LeaseDuration:           &cfg.LeaseDuration,
		RenewDeadline:           &cfg.RenewDeadline,
		RetryPeriod:             &cfg.RetryPeriod,
		// Hand over at once on SIGTERM instead of after the lease expires.
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &cfg.GracefulShutdown,
	})
	if err != nil {
		return fmt.Errorf("creating the manager: %w", err)
	}

	if cfg.TLSMode == TLSModeSelfManaged {
		if err := mgr.Add(certCache); err != nil {
			return err
		}
		// Issues on the leader; every replica serves what it issued.
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

	// Start the informers the admission path reads before serving, so that
	// no admission waits on a cold cache or calls the API server.
	for _, obj := range []client.Object{&v1alpha1.ExternalSecret{}, &v1alpha1.SecretStore{}, &v1alpha1.ClusterSecretStore{}, &v1alpha1.ClusterInjectionPolicy{}, &corev1.Namespace{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return fmt.Errorf("starting informer: %w", err)
		}
	}

	// A reference the cache cannot find is confirmed against the API server
	// before it is denied: an ExternalSecret applied together with its
	// Deployment may not have reached the informer yet.
	resolver := &resolve.Resolver{
		Reader: resolve.CacheFirst{Cache: mgr.GetCache(), Live: mgr.GetAPIReader()},
		Rules:  tenancy.Rules{PermittedKeyAnnotation: cfg.PermittedKeyAnn, PermittedRoleAnnotation: cfg.PermittedRoleAnn},
	}
	if cfg.EnableWebhook {
		// GetWebhookServer, not the variable, adds the server to the manager.
		webhookServer = mgr.GetWebhookServer()
		webhookServer.Register(keyhookadmission.PodPath, &webhook.Admission{Handler: &keyhookadmission.PodInjector{
			Resolver: resolver,
			Config: mutate.Config{
				AgentImage:           cfg.AgentImage,
				AgentImagePullPolicy: corev1.PullPolicy(cfg.AgentImagePullPolicy),
				AgentArgs:            []string{"--deadline=" + cfg.AgentDeadline.String()},
			},
		}})
		webhookServer.Register(keyhookadmission.ValidatePath, &webhook.Admission{Handler: &keyhookadmission.Validator{
			Resolver: resolver,
			Decoder:  admission.NewDecoder(scheme),
		}})
		if err := mgr.AddReadyzCheck("webhook", webhookServer.StartedChecker()); err != nil {
			return err
		}
		if serving != nil {
			// Not ready, so not in the Service, until a certificate is loaded.
			if err := mgr.AddReadyzCheck("serving-cert", serving.Ready); err != nil {
				return err
			}
		}
	}
	if cfg.EnableSync {
		clientset, err := kubernetes.NewForConfig(restCfg)
		if err != nil {
			return err
		}
		reads := secretsync.NewReadCache(cfg.ProviderCacheTTL, clock.RealClock{})
		reads.SessionTTL = cfg.ProviderSessionTTL
		// Retires expired sessions and, when the manager stops, closes them
		// all (revoking their Vault tokens).
		if err := mgr.Add(reads); err != nil {
			return err
		}
		providers := secretsync.Providers(clientset, mgr.GetAPIReader())
		if err := (&secretsync.Reconciler{
			Client:    mgr.GetClient(),
			APIReader: mgr.GetAPIReader(),
			Resolver:  resolver,
			Providers: providers,
			Reads:     reads,
			Workers:   cfg.SyncWorkers,
			Recorder:  mgr.GetEventRecorder("keyhook"),
			Clock:     clock.RealClock{},
		}).SetupWithManager(mgr); err != nil {
			return fmt.Errorf("setting up the sync: %w", err)
		}
		if err := storehealth.Setup(mgr, storehealth.Config{Rules: resolver.Rules, Providers: providers, Interval: cfg.StoreProbeInterval, Registerer: metrics.Registry}); err != nil {
			return err
		}
		if err := rollout.Setup(mgr, restCfg, rollout.Config{
			Timing:          rollout.Timing{Quiet: cfg.RolloutQuiet, Debounce: cfg.RolloutDebounce},
			ProgressTimeout: cfg.RolloutProgressWait,
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

	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	// Ready once the TLS server answers and the informers have synced.
	if err := mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches not synced")
		}
		return nil
	}); err != nil {
		return err
	}

	if cfg.LeaderElect {
		go func() {
			select {
			case <-mgr.Elected():
				logger.Info("elected leader: reconcilers running")
			case <-ctx.Done():
			}
		}()
	}
	tlsFrom := "certDir=" + filepath.Clean(cfg.CertDir)
	if cfg.TLSMode == TLSModeSelfManaged {
		tlsFrom = "secret=" + cfg.Certs.Secret.String()
	}
	logger.Info("starting", "webhookPort", cfg.WebhookPort, "tlsMode", cfg.TLSMode, "tls", tlsFrom, "agentImage", cfg.AgentImage)
	return mgr.Start(ctx)
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig != "" {
		c, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("loading --kubeconfig %s: %w", kubeconfig, err)
		}
		// As ctrl.GetConfig does: no client-side rate limit (client-go's
		// default is 5 requests/s), the API server's priority and fairness
		// decides.
		if c.QPS == 0 {
			c.QPS = -1
		}
		return c, nil
	}
	c, err := ctrl.GetConfig()
	if err != nil {
		return nil, fmt.Errorf("finding the cluster (set --kubeconfig or $KUBECONFIG): %w", err)
	}
	return c, nil
}

// RBAC the webhook binary needs besides what its packages declare.
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch
