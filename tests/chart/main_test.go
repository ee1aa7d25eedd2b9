// Package chart tests keyhook's Helm chart (charts/keyhook) with the Helm
// SDK against a real control plane of its own: lint, rendering with several
// value sets, schema errors, server-side dry runs of every object, the
// equivalence with manifests/, and install, upgrade and uninstall as the
// README's Install section does them.
package chart

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/keyhook/keyhook/tests/framework"
)

var (
	cluster *framework.Cluster
	workDir string
	// kc is a client of the cluster that also knows CRDs.
	kc client.Client
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var err error
	if workDir, err = os.MkdirTemp("", "keyhook-chart-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(workDir)
	if cluster, err = framework.StartCluster(ctx, workDir); err != nil {
		fmt.Fprintln(os.Stderr, "chart tests: control plane:", err)
		return 1
	}
	defer func() { _ = cluster.Stop() }()
	scheme := cluster.Scheme
	if err := apiextensionsv1.AddToScheme(scheme); err != nil {
		fmt.Fprintln(os.Stderr, "chart tests:", err)
		return 1
	}
	if kc, err = client.New(cluster.Config, client.Options{Scheme: scheme}); err != nil {
		fmt.Fprintln(os.Stderr, "chart tests:", err)
		return 1
	}
	// The harness installs keyhook's CRDs from manifests/crd; the chart
	// installs its own, so they go first (no custom resource exists yet).
	if err := removeKeyhookCRDs(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chart tests:", err)
		return 1
	}
	if err := installCertManagerCRDs(); err != nil {
		fmt.Fprintln(os.Stderr, "chart tests:", err)
		return 1
	}
	if err := installPrometheusOperatorCRDs(); err != nil {
		fmt.Fprintln(os.Stderr, "chart tests:", err)
		return 1
	}
	return m.Run()
}

func removeKeyhookCRDs(ctx context.Context) error {
	var list apiextensionsv1.CustomResourceDefinitionList
	if err := kc.List(ctx, &list); err != nil {
		return err
	}
	for i := range list.Items {
		if list.Items[i].Spec.Group == "keyhook.dev" {
			if err := kc.Delete(ctx, &list.Items[i]); err != nil && !apierrors.IsNotFound(err) {
				return err
			}
		}
	}
	return framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		var l apiextensionsv1.CustomResourceDefinitionList
		if err := kc.List(ctx, &l); err != nil {
			return false, err
		}
		for _, c := range l.Items {
			if c.Spec.Group == "keyhook.dev" {
				return false, nil
			}
		}
		return true, nil
	})
}

// installCertManagerCRDs installs cert-manager.io's CRDs from the
// cert-manager module go.mod pins, so the chart's Issuers and Certificates
// are checked against cert-manager's real schemas (no cert-manager
// controller runs: nothing issues).
func installCertManagerCRDs() error {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = framework.RepoRoot()
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		return fmt.Errorf("go list -m github.com/cert-manager/cert-manager: %v %q", err, out)
	}
	files, err := filepath.Glob(filepath.Join(dir, "deploy", "crds", "cert-manager.io_*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no cert-manager.io CRDs in %s/deploy/crds: %v", dir, err)
	}
	_, err = envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{Paths: files, ErrorIfPathMissing: true, MaxTime: time.Minute})
	return err
}

// prometheusOperator is the Prometheus Operator release whose CRDs the
// chart's ServiceMonitor and PrometheusRule are checked against (a version
// the Go module proxy serves; its module zip has the CRDs in
// example/prometheus-operator-crd).
const prometheusOperator = "github.com/prometheus-operator/prometheus-operator@v0.85.0"

// installPrometheusOperatorCRDs installs the ServiceMonitor and
// PrometheusRule CRDs of the Prometheus Operator, from its module, fetched
// with go mod download (cached in the module cache) like every other
// dependency.
func installPrometheusOperatorCRDs() error {
	cmd := exec.Command("go", "mod", "download", "-json", prometheusOperator)
	cmd.Dir = workDir // outside the module: nothing of go.mod or go.sum changes
	out, err := cmd.Output()
	var mod struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &mod); err != nil || jerr != nil || mod.Dir == "" {
		return fmt.Errorf("go mod download %s: %v %v %s", prometheusOperator, err, jerr, mod.Error)
	}
	var files []string
	for _, kind := range []string{"servicemonitors", "prometheusrules"} {
		files = append(files, filepath.Join(mod.Dir, "example", "prometheus-operator-crd", "monitoring.coreos.com_"+kind+".yaml"))
	}
	_, err = envtest.InstallCRDs(cluster.Config, envtest.CRDInstallOptions{Paths: files, ErrorIfPathMissing: true, MaxTime: time.Minute})
	return err
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// ensureNamespace creates a namespace for real (a dry run cannot place
// objects in a namespace that is only dry-run created).
func ensureNamespace(ctx context.Context, t *testing.T, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := kc.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}
