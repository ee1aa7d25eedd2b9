// Package app holds what keyhook's two server roles share: the scheme, the
// REST config, the flags every server has, metric registration and the
// readiness check of the caches. Each role is wired in one place of its own —
// internal/app/webhook (admission, serving TLS) and internal/app/controller
// (sync, rollouts, policy labelling, certificate issuance) — used by
// cmd/webhook, cmd/controller and bench/suite alike. This package imports
// neither role, so the webhook links no provider SDK.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/tenancy"
)

// TLS modes (--tls-mode of both roles).
const (
	// TLSModeFiles: the webhook serves tls.crt and tls.key of --cert-dir,
	// reloaded when they change (a Secret mounted there by cert-manager, or
	// any files); the controller issues nothing.
	TLSModeFiles = "files"
	// TLSModeSelfManaged: the controller issues and rotates keyhook's own CA
	// and serving certificate into --cert-secret (pkg/certs); every webhook
	// replica serves the certificate from that Secret.
	TLSModeSelfManaged = "self-managed"
)

// Common is what every role is told: where the cluster is, where metrics and
// probes listen, how long a shutdown may take, and the tenancy rules both
// the admission path and the sync check.
type Common struct {
	Kubeconfig       string
	MetricsAddr      string
	ProbeAddr        string
	GracefulShutdown time.Duration
	PermittedKeyAnn  string
	PermittedRoleAnn string
	// Zap configures the logger.
	Zap zap.Options
}

// BindFlags registers the common flags on fs.
func (c *Common) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty means in-cluster or $KUBECONFIG")
	fs.StringVar(&c.MetricsAddr, "metrics-bind-address", ":8080", "address of the Prometheus metrics endpoint; 0 disables it")
	fs.StringVar(&c.ProbeAddr, "health-probe-bind-address", ":8081", "address of /healthz and /readyz")
	fs.DurationVar(&c.GracefulShutdown, "graceful-shutdown-timeout", 30*time.Second, "how long in-flight work may take after SIGTERM")
	fs.StringVar(&c.PermittedKeyAnn, "permitted-key-annotation", tenancy.DefaultPermittedKeyAnnotation, "namespace annotation holding a regular expression that every remote key its ExternalSecrets read must match; empty turns the check off")
	fs.StringVar(&c.PermittedRoleAnn, "permitted-role-annotation", tenancy.DefaultPermittedRoleAnnotation, "namespace annotation holding a regular expression that every AWS role its stores use must match; empty turns the check off")
	c.Zap.BindFlags(fs)
}

// Rules are the tenancy rules of the common flags.
func (c *Common) Rules() tenancy.Rules {
	return tenancy.Rules{PermittedKeyAnnotation: c.PermittedKeyAnn, PermittedRoleAnnotation: c.PermittedRoleAnn}
}

// Scheme is the scheme of both roles: Kubernetes' kinds and keyhook's.
func Scheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return scheme, nil
}

// RestConfig loads kubeconfig, or in-cluster or $KUBECONFIG when it is empty.
func RestConfig(kubeconfig string) (*rest.Config, error) {
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

// Register registers a role's collectors with reg (controller-runtime's
// metrics.Registry, which its metrics server serves). A collector
// registered already (a second manager in one process, as bench/suite runs)
// is not an error.
func Register(reg prometheus.Registerer, collectors ...prometheus.Collector) error {
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			if are := (prometheus.AlreadyRegisteredError{}); errors.As(err, &are) {
				continue
			}
			return fmt.Errorf("registering metrics: %w", err)
		}
	}
	return nil
}

// TolerantRegisterer is a prometheus.Registerer that takes a collector
// registered already as registered: a second manager in one process (as
// bench/suite runs) registers the same metrics again.
type TolerantRegisterer struct{ prometheus.Registerer }

// Register registers c unless it is registered already.
func (r TolerantRegisterer) Register(c prometheus.Collector) error {
	return Register(r.Registerer, c)
}

// AddProbes adds /healthz and a /readyz check that passes once the manager's
// informers have synced.
func AddProbes(mgr ctrl.Manager) error {
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return err
	}
	return mgr.AddReadyzCheck("cache", func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches not synced")
		}
		return nil
	})
}

// ParseFlags parses args into fs and joins the errors validate reports.
func ParseFlags(fs *flag.FlagSet, args []string, validate func() []error) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return errors.Join(validate()...)
}
