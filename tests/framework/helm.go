package framework

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// KubeVersion is the version of the test control plane, which charts are
// rendered for without a cluster.
const KubeVersion = "v1.37.1"

// ChartDir is the repository's Helm chart.
func ChartDir() string { return filepath.Join(RepoRoot(), "charts", "keyhook") }

// LoadChart loads the repository's chart as helm does.
func LoadChart() (*chartv2.Chart, error) {
	return loader.Load(ChartDir())
}

// RenderChart renders the chart as `helm template --namespace ns` does,
// without a cluster, values checked against values.schema.json, and returns
// its objects (the templates'; the CRDs of crds/ are not templates).
func RenderChart(namespace string, vals map[string]any) ([]*unstructured.Unstructured, error) {
	ch, err := LoadChart()
	if err != nil {
		return nil, err
	}
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = "keyhook"
	install.Namespace = namespace
	install.Replace = true
	if install.KubeVersion, err = chartcommon.ParseKubeVersion(KubeVersion); err != nil {
		return nil, err
	}
	rel, err := install.Run(ch, vals)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a %T", rel)
	}
	return DecodeObjects(r.Manifest)
}

// DecodeObjects splits a multi-document YAML stream into objects, skipping
// empty documents, sorted by kind, namespace and name.
func DecodeObjects(manifest string) ([]*unstructured.Unstructured, error) {
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	var out []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		out = append(out, &unstructured.Unstructured{Object: m})
	}
	sort.Slice(out, func(i, j int) bool { return ObjectKey(out[i]) < ObjectKey(out[j]) })
	return out, nil
}

// ObjectKey is "Kind namespace/name" of an object.
func ObjectKey(o *unstructured.Unstructured) string {
	return o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
}

// HelmConfig is a Helm action configuration for the cluster, releases kept
// as Secrets in namespace (as the helm CLI does). Helm's log goes to logw.
func HelmConfig(c *Cluster, namespace string, logw io.Writer) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &c.Kubeconfig
	flags.Namespace = &namespace
	cfg := action.NewConfiguration()
	if logw == nil {
		logw = io.Discard
	}
	cfg.SetLogger(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, err
	}
	return cfg, nil
}

// YAML renders objects as one multi-document stream.
func YAML(objs []*unstructured.Unstructured) ([]byte, error) {
	var b bytes.Buffer
	for _, o := range objs {
		j, err := o.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.WriteString("---\n")
		b.Write(j)
		b.WriteString("\n")
	}
	return b.Bytes(), nil
}

// TestenvDir is $KEYHOOK_TESTENV: the control plane's binaries and kubectl.
func TestenvDir() string { return os.Getenv("KEYHOOK_TESTENV") }
