package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
	"github.com/keyhook/keyhook/tests/framework"
)

// agentImage is what the webhook injects; nothing pulls it.
const agentImage = "ghcr.io/keyhook/init-agent:bench"

// environment is what the suite starts: the control plane, Vault with
// kubernetes auth, the webhook, and controllers as the steps need them.
type environment struct {
	dir           string
	webhookBin    string
	controllerBin string
	cluster       *framework.Cluster
	vault         *framework.Vault
	webhook       *framework.Webhook
	// client and clientset are the admin's, without client-side rate
	// limits, for setting up many objects quickly.
	client    client.Client
	clientset *kubernetes.Clientset
	// reconciler is the running controller, if any.
	reconciler *framework.Controller
	nReconcile int
	registered bool
}

// processArgs run the binaries as in a cluster: the in-cluster client
// configuration has no client-side rate limit (controller-runtime sets QPS
// -1), while --kubeconfig would leave client-go's default of 5 requests/s.
// An empty --kubeconfig, after the framework's own, makes the binary load
// $KUBECONFIG through controller-runtime as it loads the in-cluster config.
var processArgs = []string{"--kubeconfig="}

func startEnvironment(ctx context.Context, dir, webhookBin, controllerBin string) (*environment, error) {
	e := &environment{dir: dir, webhookBin: webhookBin, controllerBin: controllerBin}
	start := time.Now()
	var err error
	if e.cluster, err = framework.StartCluster(ctx, dir); err != nil {
		return nil, err
	}
	logf("control plane ready in %s", e.cluster.StartedIn.Round(time.Millisecond))
	cfg := rest.CopyConfig(e.cluster.Config)
	cfg.QPS, cfg.Burst = -1, 0
	if e.client, err = client.New(cfg, client.Options{Scheme: e.cluster.Scheme}); err != nil {
		return e, e.fail(err)
	}
	if e.clientset, err = kubernetes.NewForConfig(cfg); err != nil {
		return e, e.fail(err)
	}
	if err := os.Setenv("KUBECONFIG", e.cluster.Kubeconfig); err != nil {
		return e, e.fail(err)
	}
	if e.vault, err = framework.StartVault(ctx, dir); err != nil {
		return e, e.fail(err)
	}
	if err := e.vault.KubernetesAuth(ctx, e.cluster); err != nil {
		return e, e.fail(fmt.Errorf("vault kubernetes auth: %w", err))
	}
	// The webhook binary: admission alone, so its CPU and memory are the
	// admission path's.
	if e.webhook, err = framework.StartWebhook(ctx, e.cluster, dir, framework.WebhookOptions{
		Binary: webhookBin, AgentImage: agentImage, Unregistered: true,
		Args: processArgs,
	}); err != nil {
		return e, e.fail(fmt.Errorf("webhook: %w", err))
	}
	logf("control plane, vault and webhook ready in %s", time.Since(start).Round(time.Millisecond))
	return e, nil
}

func (e *environment) fail(err error) error {
	_ = e.stop()
	return err
}

func (e *environment) stop() error {
	var errs []error
	if e.reconciler != nil {
		errs = append(errs, e.reconciler.Stop())
	}
	if e.webhook != nil {
		errs = append(errs, e.webhook.Stop())
	}
	if e.vault != nil {
		errs = append(errs, e.vault.Stop())
	}
	if e.cluster != nil {
		errs = append(errs, e.cluster.Stop())
	}
	return errors.Join(errs...)
}

// register registers the webhook with the API server (on) or removes its
// registration, and waits until the API server acts on it: a dry-run
// create of the fixture pod in ns is injected, or is not.
func (e *environment) register(ctx context.Context, on bool, ns string) error {
	o := framework.WebhookConfigOptions(e.webhook.ConfigName, e.webhook.URL, e.webhook.CAPEM)
	mutating, validating := webhookconfigs(o)
	for _, obj := range []client.Object{mutating, validating} {
		var err error
		if on {
			err = e.client.Create(ctx, obj)
			if apierrors.IsAlreadyExists(err) {
				err = nil
			}
		} else {
			err = client.IgnoreNotFound(e.client.Delete(ctx, obj))
		}
		if err != nil {
			return err
		}
	}
	e.registered = on
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return framework.WaitFor(wctx, 100*time.Millisecond, func() (bool, error) {
		pod := benchPod(ns)
		if err := e.client.Create(wctx, pod, client.DryRunAll); err != nil {
			return false, err
		}
		_, injected := pod.Annotations["keyhook.dev/status"]
		return injected == on, nil
	})
}

// tenant creates a namespace with the service account "app", a Vault role
// for it that reads secret/<ns>/*, and the fixture's SecretStore "vault".
func (e *environment) tenant(ctx context.Context, prefix string) (string, error) {
	ns, err := e.cluster.Namespace(ctx, prefix, nil)
	if err != nil {
		return "", err
	}
	if err := e.client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fixture.ServiceAccount}}); err != nil {
		return "", err
	}
	if err := e.vault.Role(ctx, ns, ns, fixture.ServiceAccount, "vault", ns+"/*"); err != nil {
		return "", err
	}
	if err := e.client.Create(ctx, fixture.Store(ns, e.vault.Addr, ns)); err != nil {
		return "", err
	}
	return ns, nil
}

// deleteNamespace deletes ns and waits until it is gone.
func (e *environment) deleteNamespace(ctx context.Context, ns string) error {
	obj := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
	if err := client.IgnoreNotFound(e.client.Delete(ctx, obj)); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return framework.WaitFor(wctx, 250*time.Millisecond, func() (bool, error) {
		err := e.client.Get(wctx, client.ObjectKeyFromObject(obj), &corev1.Namespace{})
		return apierrors.IsNotFound(err), client.IgnoreNotFound(err)
	})
}

// startReconciler starts a fresh controller, stopping the previous one.
func (e *environment) startReconciler(ctx context.Context) (*framework.Controller, error) {
	if err := e.stopReconciler(); err != nil {
		return nil, err
	}
	e.nReconcile++
	dir := filepath.Join(e.dir, fmt.Sprintf("reconciler-%d", e.nReconcile))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	w, err := framework.StartController(ctx, e.cluster, dir, framework.ControllerOptions{
		Binary: e.controllerBin, Name: "keyhook-controller",
		Args: processArgs,
	})
	if err != nil {
		return nil, err
	}
	e.reconciler = w
	return w, nil
}

func (e *environment) stopReconciler() error {
	if e.reconciler == nil {
		return nil
	}
	err := e.reconciler.Stop()
	e.reconciler = nil
	return err
}

func webhookconfigs(o webhookconfig.Options) (client.Object, client.Object) {
	return webhookconfig.Mutating(o), webhookconfig.Validating(o)
}
