// Package webhook wires keyhook's webhook role: pod admission (injection of
// the init-agent), validation of keyhook's own kinds, and serving TLS — from
// files (cert-manager) or from the Secret the controller issues into
// (self-managed). It only reads the API: the RBAC markers below and those of
// pkg/admission make its ClusterRole (make manifests). It must link no
// provider SDK (make verify checks `go list -deps ./cmd/webhook`).
package webhook

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	crwebhook "sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyhook/keyhook/internal/app"
	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/certs"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/store"
)

// The webhook's own TLS Secret, read by name (self-managed TLS). The
// controller's Role may write it; this one may only read it.
// +kubebuilder:rbac:groups="",namespace=keyhook-system,resources=secrets,resourceNames=keyhook-webhook-tls,verbs=get;list;watch

// Config is everything the webhook is told, validated.
type Config struct {
	app.Common
	WebhookHost string
	WebhookPort int
	CertDir     string
	AgentImage  string
	// ProviderImages are the one-provider agent images by provider
	// (--agent-image-vault, ...); "" means AgentImage.
	ProviderImages       map[string]string
	AgentImagePullPolicy string
	AgentDeadline        time.Duration
	// TLSMode is app.TLSModeFiles or app.TLSModeSelfManaged.
	TLSMode string
	// CertSecret holds the serving certificate (self-managed TLS).
	CertSecret string
}

// ParseConfig parses the webhook's flags.
func ParseConfig(args []string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("keyhook-webhook", flag.ContinueOnError)
	c.BindFlags(fs)
	err := app.ParseFlags(fs, args, c.validate)
	return c, err
}

// BindFlags registers the webhook's flags on fs.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	c.Common.BindFlags(fs)
	fs.StringVar(&c.WebhookHost, "webhook-host", "", "address the webhook server listens on; empty means all")
	fs.IntVar(&c.WebhookPort, "webhook-port", 9443, "port of the TLS webhook server")
	fs.StringVar(&c.CertDir, "cert-dir", "/etc/keyhook/tls", "files TLS: directory holding tls.crt and tls.key; reloaded when they change")
	fs.StringVar(&c.AgentImage, "agent-image", "ghcr.io/keyhook/init-agent:latest", "image of the all-provider init-agent, injected into pods whose stores are of more than one provider or of one without its own image below")
	c.ProviderImages = map[string]string{}
	for _, p := range store.All() {
		name, title := p.Name(), p.Title()
		fs.Func("agent-image-"+name, "image of the init-agent built with the "+title+" provider alone (build tag "+name+"), injected into pods whose stores are all "+title+" ones; empty means --agent-image", func(v string) error {
			c.ProviderImages[name] = v
			return nil
		})
	}
	fs.StringVar(&c.AgentImagePullPolicy, "agent-image-pull-policy", string(corev1.PullIfNotPresent), "pull policy of the init-agent image: Always, IfNotPresent or Never")
	fs.DurationVar(&c.AgentDeadline, "agent-deadline", 2*time.Minute, "how long the init-agent retries before it fails the pod")
	fs.StringVar(&c.TLSMode, "tls-mode", app.TLSModeFiles, "where the serving certificate comes from: files (tls.crt and tls.key in --cert-dir, e.g. from cert-manager) or self-managed (the Secret --cert-secret, which keyhook-controller issues and rotates)")
	fs.StringVar(&c.CertSecret, "cert-secret", "keyhook-system/keyhook-webhook-tls", "self-managed TLS: namespace/name of the Secret holding the serving certificate (RBAC in manifests/ names it)")
}

func (c *Config) validate() []error {
	var errs []error
	switch c.TLSMode {
	case app.TLSModeFiles:
	case app.TLSModeSelfManaged:
		if s := certs.ParseSecretRef(c.CertSecret); s.Namespace == "" || s.Name == "" {
			errs = append(errs, fmt.Errorf("--cert-secret %q is not namespace/name", c.CertSecret))
		}
	default:
		errs = append(errs, fmt.Errorf("--tls-mode %q is not %s or %s", c.TLSMode, app.TLSModeFiles, app.TLSModeSelfManaged))
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
	if c.WebhookPort <= 0 || c.WebhookPort > 65535 {
		errs = append(errs, fmt.Errorf("--webhook-port %d is not a port", c.WebhookPort))
	}
	return errs
}

// MutateConfig is what the pod injector puts into pods.
func (c *Config) MutateConfig() mutate.Config {
	return mutate.Config{
		AgentImage:           c.AgentImage,
		ProviderImages:       c.ProviderImages,
		AgentImagePullPolicy: corev1.PullPolicy(c.AgentImagePullPolicy),
		AgentArgs:            []string{"--deadline=" + c.AgentDeadline.String()},
	}
}

// New builds the webhook's manager: the TLS server with the two admission
// handlers, the informers they read (started before it serves, so no
// admission waits on a cold cache), metrics and probes. No leader election:
// every replica serves.
func New(ctx context.Context, restCfg *rest.Config, cfg Config) (ctrl.Manager, error) {
	scheme, err := app.Scheme()
	if err != nil {
		return nil, err
	}
	serverOpts := crwebhook.Options{
		Host:     cfg.WebhookHost,
		Port:     cfg.WebhookPort,
		CertDir:  cfg.CertDir,
		CertName: "tls.crt",
		KeyName:  "tls.key",
	}
	var certCache *certs.Cache
	var serving *certs.ServingCert
	if cfg.TLSMode == app.TLSModeSelfManaged {
		secret := certs.ParseSecretRef(cfg.CertSecret)
		if certCache, err = certs.NewCache(ctx, restCfg, scheme, certs.Config{Secret: secret}); err != nil {
			return nil, err
		}
		serving = &certs.ServingCert{Reader: certCache, Secret: secret, Log: ctrl.Log.WithName("certs")}
		// With GetCertificate set, the server does not read --cert-dir.
		serverOpts.CertDir = ""
		serverOpts.TLSOpts = []func(*tls.Config){func(c *tls.Config) { c.GetCertificate = serving.GetCertificate }}
	}
	mgr, err := ctrl.NewManager(restCfg, ctrl.Options{
		Scheme:                  scheme,
		WebhookServer:           crwebhook.NewServer(serverOpts),
		Metrics:                 metricsserver.Options{BindAddress: cfg.MetricsAddr},
		HealthProbeBindAddress:  cfg.ProbeAddr,
		GracefulShutdownTimeout: &cfg.GracefulShutdown,
	})
	if err != nil {
		return nil, fmt.Errorf("creating the manager: %w", err)
	}
	// The serving certificate's expiry is exported in either TLS mode, as
	// the dashboards and alerts of the chart expect it.
	if err := app.Register(metrics.Registry, append(keyhookadmission.Metrics(), certs.ServingMetrics()...)...); err != nil {
		return nil, err
	}
	for _, obj := range []client.Object{&v1alpha1.ExternalSecret{}, &v1alpha1.SecretStore{}, &v1alpha1.ClusterSecretStore{}, &v1alpha1.ClusterInjectionPolicy{}, &corev1.Namespace{}} {
		if _, err := mgr.GetCache().GetInformer(ctx, obj); err != nil {
			return nil, fmt.Errorf("starting informer: %w", err)
		}
	}
	// A reference the cache cannot find is confirmed against the API server
	// before it is denied: an ExternalSecret applied together with its
	// Deployment may not have reached the informer yet.
	resolver := &resolve.Resolver{
		Reader: resolve.CacheFirst{Cache: mgr.GetCache(), Live: mgr.GetAPIReader()},
		Rules:  cfg.Rules(),
	}
	server := mgr.GetWebhookServer()
	// The pod injector serves HTTP itself: one decode of the review, the
	// response written directly (see PodInjector.ServeHTTP); Register adds
	// the webhook server's metrics.
	injector := keyhookadmission.PodInjector{
		Resolver: resolver,
		Config:   cfg.MutateConfig(),
		Live:     mgr.GetAPIReader(),
	}
	server.Register(keyhookadmission.PodPath, &injector)
	// The enforced entry's own path: the namespace is enforced whatever
	// this replica's cache says.
	enforced := injector
	enforced.Enforced = true
	server.Register(keyhookadmission.EnforcedPodPath, &enforced)
	server.Register(keyhookadmission.ValidatePath, &crwebhook.Admission{Handler: &keyhookadmission.Validator{
		Resolver: resolver,
		Decoder:  admission.NewDecoder(scheme),
	}})
	if err := mgr.AddReadyzCheck("webhook", server.StartedChecker()); err != nil {
		return nil, err
	}
	if serving != nil {
		if err := mgr.Add(certCache); err != nil {
			return nil, err
		}
		// Not ready, so not in the Service, until a certificate is loaded.
		if err := mgr.AddReadyzCheck("serving-cert", serving.Ready); err != nil {
			return nil, err
		}
	}
	if err := app.AddProbes(mgr); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Run runs the webhook until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	restCfg, err := app.RestConfig(cfg.Kubeconfig)
	if err != nil {
		return err
	}
	mgr, err := New(ctx, restCfg, cfg)
	if err != nil {
		return err
	}
	tlsFrom := "certDir=" + filepath.Clean(cfg.CertDir)
	if cfg.TLSMode == app.TLSModeSelfManaged {
		tlsFrom = "secret=" + cfg.CertSecret
	}
	ctrl.Log.WithName("setup").Info("starting the webhook", "webhookPort", cfg.WebhookPort, "tlsMode", cfg.TLSMode, "tls", tlsFrom, "agentImage", cfg.AgentImage, "providerAgentImages", cfg.ProviderImages)
	return mgr.Start(ctx)
}
