package framework

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"helm.sh/helm/v4/pkg/action"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
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
	rel, err := install.Run(ch, CopyValues(vals))
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*releasev1.Release)
	if !ok {
		return nil, fmt.Errorf("helm returned a %T", rel)
	}
	return DecodeObjects(r.Manifest)
}

// CopyValues is a deep copy of Helm values. Helm deletes the keys a user set
// to null from the map it is given, so a map used twice must be copied.
func CopyValues(v map[string]any) map[string]any {
	if v == nil {
		return nil
	}
	out := make(map[string]any, len(v))
	for k, x := range v {
		out[k] = copyValue(x)
	}
	return out
}

func copyValue(x any) any {
	switch x := x.(type) {
	case map[string]any:
		return CopyValues(x)
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = copyValue(x[i])
		}
		return out
	}
	return x
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

// ReadmeInstallCommands returns the shell commands of the README's Install
// section ("## Install" up to the next "## "), one per command: lines of its
// sh code blocks, continuation lines (a trailing \) joined, comments and
// blank lines dropped. Tests run these very commands, so that the README
// says what they do.
func ReadmeInstallCommands() ([]string, error) {
	blocks, err := readmeInstallBlocks()
	return slices.Concat(blocks...), err
}

// readmeInstallBlocks is ReadmeInstallCommands by code block.
func readmeInstallBlocks() ([][]string, error) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "README.md"))
	if err != nil {
		return nil, err
	}
	_, section, ok := strings.Cut(string(b), "\n## Install\n")
	if !ok {
		return nil, errors.New("README.md has no ## Install section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	var blocks [][]string
	var cmds []string
	inBlock, cont := false, ""
	for _, line := range strings.Split(section, "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock, cmds = true, nil
			continue
		case strings.HasPrefix(line, "```"):
			if inBlock {
				blocks = append(blocks, cmds)
			}
			inBlock = false
			continue
		case !inBlock:
			continue
		}
		if i := strings.Index(line, " #"); i >= 0 {
			line = line[:i]
		}
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		line = strings.TrimSpace(line)
		if c, ok := strings.CutSuffix(line, "\\"); ok {
			cont += c
			continue
		}
		line = strings.Join(strings.Fields(cont+line), " ")
		cont = ""
		if line != "" {
			cmds = append(cmds, line)
		}
	}
	return blocks, nil
}

// ReadmeCommand returns the one command of the README's Install section
// that starts with prefix and contains every string of with.
func ReadmeCommand(prefix string, with ...string) (string, error) {
	cmds, err := ReadmeInstallCommands()
	if err != nil {
		return "", err
	}
	var found []string
	for _, c := range cmds {
		if !strings.HasPrefix(c, prefix) {
			continue
		}
		all := true
		for _, w := range with {
			all = all && strings.Contains(c, w)
		}
		if all {
			found = append(found, c)
		}
	}
	if len(found) != 1 {
		return "", fmt.Errorf("README's Install section has %d commands starting with %q and containing %q, want one: %q", len(found), prefix, with, found)
	}
	return found[0], nil
}

// HelmCommand is a helm install, upgrade or uninstall command line of the
// README, parsed into what the Helm SDK takes.
type HelmCommand struct {
	// Verb is install, upgrade or uninstall.
	Verb            string
	Release         string
	Chart           string
	Namespace       string
	CreateNamespace bool
	ReuseValues     bool
	// Values are -f and --set as the helm CLI parses them.
	Values values.Options
}

// ParseHelmCommand parses a helm command line of the README: the flags it
// knows are -n/--namespace, --create-namespace, --reuse-values, -f/--values
// and --set; any other is an error, so that the test runs all the README
// says.
func ParseHelmCommand(line string) (HelmCommand, error) {
	f := strings.Fields(line)
	if len(f) < 3 || f[0] != "helm" {
		return HelmCommand{}, fmt.Errorf("%q is not a helm command", line)
	}
	c := HelmCommand{Verb: f[1]}
	var pos []string
	for i := 2; i < len(f); i++ {
		arg := f[i]
		next := func() (string, error) {
			if i+1 >= len(f) {
				return "", fmt.Errorf("%q: %s takes a value", line, arg)
			}
			i++
			return f[i], nil
		}
		var err error
		var v string
		switch arg {
		case "-n", "--namespace":
			c.Namespace, err = next()
		case "--create-namespace":
			c.CreateNamespace = true
		case "--reuse-values":
			c.ReuseValues = true
		case "-f", "--values":
			v, err = next()
			c.Values.ValueFiles = append(c.Values.ValueFiles, v)
		case "--set":
			v, err = next()
			c.Values.Values = append(c.Values.Values, v)
		default:
			if strings.HasPrefix(arg, "-") {
				return c, fmt.Errorf("%q: flag %s is not one the tests know", line, arg)
			}
			pos = append(pos, arg)
		}
		if err != nil {
			return c, err
		}
	}
	want := map[string]int{"install": 2, "upgrade": 2, "uninstall": 1}[c.Verb]
	if want == 0 || len(pos) != want {
		return c, fmt.Errorf("%q: helm %s with arguments %q", line, c.Verb, pos)
	}
	c.Release = pos[0]
	if want == 2 {
		c.Chart = pos[1]
	}
	return c, nil
}

// MergeValues returns the command's values as the helm CLI merges them,
// with -f files relative to dir.
func (c HelmCommand) MergeValues(dir string) (map[string]any, error) {
	o := c.Values
	o.ValueFiles = nil
	for _, f := range c.Values.ValueFiles {
		if !filepath.IsAbs(f) {
			f = filepath.Join(dir, f)
		}
		o.ValueFiles = append(o.ValueFiles, f)
	}
	return o.MergeValues(getter.Providers{})
}

// ReadmeUninstallSteps are the kubectl commands that follow helm uninstall
// in its code block of the README's Install section, in their order, but the
// optional removal of the CRDs (kubectl delete crd).
func ReadmeUninstallSteps() ([]string, error) {
	blocks, err := readmeInstallBlocks()
	if err != nil {
		return nil, err
	}
	for _, cmds := range blocks {
		i := slices.IndexFunc(cmds, func(c string) bool { return strings.HasPrefix(c, "helm uninstall ") })
		if i < 0 {
			continue
		}
		var steps []string
		for _, c := range cmds[i+1:] {
			if strings.HasPrefix(c, "kubectl ") && !strings.HasPrefix(c, "kubectl delete crd") {
				steps = append(steps, c)
			}
		}
		if len(steps) == 0 {
			return nil, errors.New("README's Install section has no kubectl step after helm uninstall")
		}
		return steps, nil
	}
	return nil, errors.New("README's Install section has no helm uninstall")
}
