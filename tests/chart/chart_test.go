package chart

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/action"
	chartcommon "helm.sh/helm/v4/pkg/chart/common"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/tests/framework"
)

// valueSets are the configurations the chart is rendered, linted and
// dry-run with: the two TLS modes of the README, everything optional on,
// and a minimal one.
var valueSets = map[string]map[string]any{
	"defaults (cert-manager)": nil,
	"self-managed TLS":        {"tls": map[string]any{"mode": "selfManaged"}},
	"everything on": {
		"image": map[string]any{"registry": "registry.example/keyhook", "tag": "v1.2.3", "pullPolicy": "Always"},
		"agent": map[string]any{
			"image":          map[string]any{"repository": "mirror.example/keyhook-agent", "tag": "v9"},
			"providerImages": map[string]any{"aws": nil, "gcpsm": map[string]any{"digest": "sha256:" + strings.Repeat("cd", 32)}},
			"deadline":       "90s",
		},
		"webhook": map[string]any{
			"image":    map[string]any{"digest": "sha256:" + strings.Repeat("ab", 32)},
			"replicas": 3, "priorityClassName": "system-cluster-critical", "requireAntiAffinity": true,
			"nodeSelector":   map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":    []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}},
			"extraArgs":      []any{"--zap-log-level=debug"},
			"podAnnotations": map[string]any{"example.com/team": "platform"},
		},
		"controller": map[string]any{
			"image":    map[string]any{"pullPolicy": "IfNotPresent"},
			"replicas": 3, "priorityClassName": "system-cluster-critical", "requireAntiAffinity": true,
			"nodeSelector":   map[string]any{"kubernetes.io/os": "linux"},
			"tolerations":    []any{map[string]any{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}},
			"podAnnotations": map[string]any{"example.com/team": "platform"},
			"podLabels":      map[string]any{"example.com/tier": "control"},
			"extraArgs":      []any{"--zap-log-level=debug"},
			"extraEnv":       []any{map[string]any{"name": "GOMEMLIMIT", "value": "400MiB"}, map[string]any{"name": "GODEBUG", "value": "madvdontneed=1"}},
		},
		"sync":           map[string]any{"workers": 8, "rolloutDebounce": "30s"},
		"leaderElection": map[string]any{"leaseDuration": "30s"},
		"metrics": map[string]any{
			"serviceMonitor": map[string]any{"enabled": true},
			"prometheusRule": map[string]any{"enabled": true},
			"dashboard":      map[string]any{"enabled": true},
		},
		"networkPolicy": map[string]any{"enabled": true, "metricsFrom": []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "monitoring"}}}}},
	},
	// The former names of controller.enableSync and controller.enablePolicy.
	"webhook.enableSync (former name)": {
		"webhook":    map[string]any{"enableSync": false},
		"controller": map[string]any{"enablePolicy": false},
	},
	// One webhook replica (no PodDisruptionBudget: it would block every
	// drain), the controller's budget turned off.
	"minimal": {
		"webhook":    map[string]any{"replicas": 1},
		"controller": map[string]any{"podDisruptionBudget": map[string]any{"enabled": false}},
		"metrics":    map[string]any{"enabled": false}, "leaderElection": map[string]any{"enabled": false},
		"agent": map[string]any{"providerImages": nil},
	},
}

func TestChartLint(t *testing.T) {
	for name, vals := range valueSets {
		t.Run(name, func(t *testing.T) {
			lint := action.NewLint()
			lint.Strict = true
			lint.Namespace = "keyhook-system"
			kv, err := chartcommon.ParseKubeVersion(framework.KubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			lint.KubeVersion = kv
			res := lint.Run([]string{framework.ChartDir()}, framework.CopyValues(vals))
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
			}
			if len(res.Errors) > 0 || res.TotalChartsLinted != 1 {
				t.Errorf("helm lint --strict: %d charts, errors %v", res.TotalChartsLinted, res.Errors)
			}
		})
	}
}

// A wrong value fails with a message naming the field (values.schema.json).
func TestChartSchemaNamesTheField(t *testing.T) {
	for _, tc := range []struct {
		vals map[string]any
		want string
	}{
		{map[string]any{"tls": map[string]any{"mode": "letsencrypt"}}, "/tls/mode"},
		{map[string]any{"sync": map[string]any{"workers": 0}}, "/sync/workers"},
		{map[string]any{"webhook": map[string]any{"replicas": "two"}}, "/webhook/replicas"},
		{map[string]any{"webhook": map[string]any{"replica": 2}}, "'replica'"},
		{map[string]any{"webhook": map[string]any{"image": map[string]any{"digest": "latest"}}}, "/webhook/image/digest"},
		{map[string]any{"agent": map[string]any{"providerImages": map[string]any{"vault": map[string]any{"digest": "v1"}}}}, "/agent/providerImages/vault/digest"},
		{map[string]any{"agent": map[string]any{"providerImages": map[string]any{"azure": map[string]any{}}}}, "'azure'"},
		// The webhook's image moved from image.repository to webhook.image.
		{map[string]any{"image": map[string]any{"repository": "ghcr.io/keyhook/webhook"}}, "'repository'"},
		{map[string]any{"image": map[string]any{"registry": ""}}, "/image/registry"},
		{map[string]any{"controller": map[string]any{"tolerations": map[string]any{"key": "x"}}}, "/controller/tolerations"},
		{map[string]any{"controller": map[string]any{"podDisruptionBudget": map[string]any{"enabled": "yes"}}}, "/controller/podDisruptionBudget/enabled"},
		{map[string]any{"agent": map[string]any{"deadline": "2 minutes"}}, "/agent/deadline"},
		{map[string]any{"sync": map[string]any{"rolloutDebounce": 10}}, "/sync/rolloutDebounce"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			_, err := framework.RenderChart("keyhook-system", tc.vals)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("values %v: error %v, want one naming %s", tc.vals, err, tc.want)
			}
		})
	}
}

func render(t *testing.T, ns string, vals map[string]any) map[string]*unstructured.Unstructured {
	t.Helper()
	objs, err := framework.RenderChart(ns, vals)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for _, o := range objs {
		k := framework.ObjectKey(o)
		if out[k] != nil {
			t.Fatalf("%s rendered twice", k)
		}
		out[k] = o
	}
	return out
}

// containerEnv is the env of a Deployment's one container, by name: a
// literal value, or "fieldRef:<resource>" for a resourceFieldRef. A name
// given twice is an error: the API server keeps only the last one.
func containerEnv(t *testing.T, d *unstructured.Unstructured) map[string]string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	env, _, _ := unstructured.NestedSlice(cs[0].(map[string]any), "env")
	out := map[string]string{}
	for _, e := range env {
		e := e.(map[string]any)
		name, _ := e["name"].(string)
		if _, dup := out[name]; dup {
			t.Errorf("%s: env %s given twice", d.GetName(), name)
		}
		if v, ok := e["value"].(string); ok {
			out[name] = v
		} else if r, ok, _ := unstructured.NestedString(e, "valueFrom", "resourceFieldRef", "resource"); ok {
			out[name] = "fieldRef:" + r
		} else {
			out[name] = ""
		}
	}
	return out
}

func containerArgs(t *testing.T, d *unstructured.Unstructured) []string {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("Deployment has %d containers", len(cs))
	}
	args, _, _ := unstructured.NestedStringSlice(cs[0].(map[string]any), "args")
	return args
}

// What each value set changes, as a user reading the rendered objects would
// check it, in a namespace other than keyhook-system.
func TestChartTemplates(t *testing.T) {
	const ns = "secrets-system"
	t.Run("defaults (cert-manager)", func(t *testing.T) {
		objs := render(t, ns, nil)
		for _, k := range []string{"Issuer " + ns + "/keyhook-selfsigned", "Issuer " + ns + "/keyhook-ca", "Certificate " + ns + "/keyhook-ca", "Certificate " + ns + "/keyhook-webhook",
			"Deployment " + ns + "/keyhook-webhook", "Deployment " + ns + "/keyhook-controller", "Service " + ns + "/keyhook-webhook", "PodDisruptionBudget " + ns + "/keyhook-webhook", "PodDisruptionBudget " + ns + "/keyhook-controller",
			"ServiceAccount " + ns + "/keyhook-webhook", "ClusterRole /keyhook-webhook", "ClusterRoleBinding /keyhook-webhook", "Role " + ns + "/keyhook-webhook", "RoleBinding " + ns + "/keyhook-webhook",
			"ServiceAccount " + ns + "/keyhook-controller", "ClusterRole /keyhook-controller", "ClusterRoleBinding /keyhook-controller", "Role " + ns + "/keyhook-controller", "RoleBinding " + ns + "/keyhook-controller",
			"MutatingWebhookConfiguration /keyhook", "ValidatingWebhookConfiguration /keyhook"} {
			if objs[k] == nil {
				t.Errorf("no %s among %v", k, keys(objs))
			}
		}
		for _, k := range []string{"ServiceMonitor " + ns + "/keyhook", "PrometheusRule " + ns + "/keyhook", "NetworkPolicy " + ns + "/keyhook", "ConfigMap " + ns + "/keyhook-dashboard"} {
			if objs[k] != nil {
				t.Errorf("%s rendered though off by default", k)
			}
		}
		cert := objs["Certificate "+ns+"/keyhook-webhook"]
		dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
		if !cmp.Equal(dns, []string{"keyhook-webhook." + ns + ".svc", "keyhook-webhook." + ns + ".svc.cluster.local"}) {
			t.Errorf("serving certificate for %v", dns)
		}
		for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
			reg := objs[kind+" /keyhook"]
			if got := reg.GetAnnotations()["cert-manager.io/inject-ca-from"]; got != ns+"/keyhook-webhook" {
				t.Errorf("%s inject-ca-from %q", kind, got)
			}
			hooks, _, _ := unstructured.NestedSlice(reg.Object, "webhooks")
			for _, h := range hooks {
				svcNS, _, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "service", "namespace")
				exprs, _, _ := unstructured.NestedSlice(h.(map[string]any), "namespaceSelector", "matchExpressions")
				if svcNS != ns || (kind == "MutatingWebhookConfiguration" && !strings.Contains(toString(exprs), "[kube-system "+ns+"]")) {
					t.Errorf("%s entry calls namespace %q, excludes %v", kind, svcNS, exprs)
				}
			}
		}
		// Every image from image.registry and the appVersion, the
		// one-provider agents included.
		for d, want := range map[string]string{"keyhook-webhook": "ghcr.io/keyhook/webhook:0.1.0", "keyhook-controller": "ghcr.io/keyhook/controller:0.1.0"} {
			if img, pull := containerImage(t, objs["Deployment "+ns+"/"+d]); img != want || pull != "IfNotPresent" {
				t.Errorf("%s runs %s (%s), want %s (IfNotPresent)", d, img, pull, want)
			}
		}
		args := containerArgs(t, objs["Deployment "+ns+"/keyhook-webhook"])
		for _, want := range []string{"--cert-dir=/etc/keyhook/tls", "--agent-image=ghcr.io/keyhook/init-agent:0.1.0", "--agent-image-vault=ghcr.io/keyhook/init-agent-vault:0.1.0",
			"--agent-image-aws=ghcr.io/keyhook/init-agent-aws:0.1.0", "--agent-image-gcpsm=ghcr.io/keyhook/init-agent-gcpsm:0.1.0", "--agent-image-pull-policy=IfNotPresent",
			"--agent-deadline=2m", "--metrics-bind-address=:8080"} {
			if !slices.Contains(args, want) {
				t.Errorf("webhook args %v lack %s", args, want)
			}
		}
		for _, d := range []string{"keyhook-webhook", "keyhook-controller"} {
			spec := podSpec(t, objs["Deployment "+ns+"/"+d])
			terms, _, _ := unstructured.NestedSlice(spec, "affinity", "podAntiAffinity", "preferredDuringSchedulingIgnoredDuringExecution")
			if len(terms) != 1 || !strings.Contains(toString(terms), "app.kubernetes.io/component:"+strings.TrimPrefix(d, "keyhook-")) {
				t.Errorf("%s: anti-affinity %v, want replicas spread by default", d, spec["affinity"])
			}
		}
		args = containerArgs(t, objs["Deployment "+ns+"/keyhook-controller"])
		for _, want := range []string{"--leader-elect=true", "--enable-sync=true", "--enable-policy=true", "--sync-workers=4", "--rollout-debounce=10s", "--version-probe-interval=15s", "--metrics-bind-address=:8080"} {
			if !slices.Contains(args, want) {
				t.Errorf("controller args %v lack %s", args, want)
			}
		}
	})
	t.Run("self-managed TLS", func(t *testing.T) {
		objs := render(t, ns, valueSets["self-managed TLS"])
		for k := range objs {
			if strings.HasPrefix(k, "Issuer ") || strings.HasPrefix(k, "Certificate ") {
				t.Errorf("%s rendered in self-managed mode", k)
			}
		}
		if a := objs["MutatingWebhookConfiguration /keyhook"].GetAnnotations(); a["cert-manager.io/inject-ca-from"] != "" {
			t.Errorf("self-managed registration carries inject-ca-from")
		}
		d := objs["Deployment "+ns+"/keyhook-webhook"]
		args := containerArgs(t, d)
		for _, want := range []string{"--tls-mode=self-managed", "--cert-secret=" + ns + "/keyhook-webhook-tls"} {
			if !slices.Contains(args, want) {
				t.Errorf("webhook args %v lack %s", args, want)
			}
		}
		args = containerArgs(t, objs["Deployment "+ns+"/keyhook-controller"])
		for _, want := range []string{"--tls-mode=self-managed", "--cert-secret=" + ns + "/keyhook-webhook-tls",
			"--webhook-service=keyhook-webhook." + ns + ".svc,keyhook-webhook." + ns + ".svc.cluster.local", "--webhook-configuration=keyhook"} {
			if !slices.Contains(args, want) {
				t.Errorf("controller args %v lack %s", args, want)
			}
		}
		if vols, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "volumes"); len(vols) != 0 {
			t.Errorf("self-managed Deployment mounts %v: its pods would wait for the Secret", vols)
		}
	})
	t.Run("everything on", func(t *testing.T) {
		objs := render(t, ns, valueSets["everything on"])
		d := objs["Deployment "+ns+"/keyhook-webhook"]
		if img, pull := containerImage(t, d); img != "registry.example/keyhook/webhook@sha256:"+strings.Repeat("ab", 32) || pull != "Always" {
			t.Errorf("webhook image %v (%s): the digest must pin it, image.pullPolicy apply", img, pull)
		}
		if r, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(r) != "3" {
			t.Errorf("replicas %v", r)
		}
		args := containerArgs(t, d)
		for _, want := range []string{"--agent-image=mirror.example/keyhook-agent:v9", "--agent-image-vault=registry.example/keyhook/init-agent-vault:v1.2.3",
			"--agent-image-gcpsm=registry.example/keyhook/init-agent-gcpsm@sha256:" + strings.Repeat("cd", 32), "--agent-image-pull-policy=Always",
			"--agent-deadline=90s", "--zap-log-level=debug"} {
			if !slices.Contains(args, want) {
				t.Errorf("webhook args %v lack %s", args, want)
			}
		}
		if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--agent-image-aws") }) {
			t.Errorf("agent.providerImages.aws is null, yet the webhook has %v", args)
		}
		c := objs["Deployment "+ns+"/keyhook-controller"]
		if img, pull := containerImage(t, c); img != "registry.example/keyhook/controller:v1.2.3" || pull != "IfNotPresent" {
			t.Errorf("controller image %v (%s)", img, pull)
		}
		// Both Deployments are placed as asked, each spreading its own pods.
		for name, d := range map[string]*unstructured.Unstructured{"webhook": d, "controller": c} {
			spec := podSpec(t, d)
			if spec["priorityClassName"] != "system-cluster-critical" || spec["nodeSelector"] == nil || spec["tolerations"] == nil {
				t.Errorf("%s pod spec lacks priorityClassName, nodeSelector or tolerations: %v", name, spec)
			}
			terms, ok, _ := unstructured.NestedSlice(spec, "affinity", "podAntiAffinity", "requiredDuringSchedulingIgnoredDuringExecution")
			if !ok || !strings.Contains(toString(terms), "app.kubernetes.io/component:"+name) {
				t.Errorf("%s: requireAntiAffinity did not make it required among its own pods: %v", name, spec["affinity"])
			}
			if a, _, _ := unstructured.NestedString(d.Object, "spec", "template", "metadata", "annotations", "example.com/team"); a != "platform" {
				t.Errorf("%s: podAnnotations not on the pod template", name)
			}
			pdb := objs["PodDisruptionBudget "+ns+"/keyhook-"+name]
			if pdb == nil {
				t.Errorf("no PodDisruptionBudget for the %s's 3 replicas", name)
				continue
			}
			sel, _, _ := unstructured.NestedStringMap(pdb.Object, "spec", "selector", "matchLabels")
			if sel["app.kubernetes.io/component"] != name {
				t.Errorf("%s's PodDisruptionBudget selects %v", name, sel)
			}
		}
		if l := c.Object["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)["labels"].(map[string]any); l["example.com/tier"] != "control" {
			t.Errorf("controller podLabels not on the pod template: %v", l)
		}
		if !slices.Contains(containerArgs(t, c), "--zap-log-level=debug") {
			t.Errorf("controller.extraArgs missing: %v", containerArgs(t, c))
		}
		// extraEnv is added, and a GOMEMLIMIT of its own replaces the default.
		if env, want := containerEnv(t, c), map[string]string{"GOMEMLIMIT": "400MiB", "GODEBUG": "madvdontneed=1"}; !cmp.Equal(env, want) {
			t.Errorf("controller env %v, want %v", env, want)
		}
		if env, want := containerEnv(t, objs["Deployment "+ns+"/keyhook-webhook"]), map[string]string{"GOMEMLIMIT": "fieldRef:limits.memory"}; !cmp.Equal(env, want) {
			t.Errorf("webhook env %v, want %v", env, want)
		}
		// The controller's NetworkPolicy admits metrics from monitoring, nothing else.
		if np := objs["NetworkPolicy "+ns+"/keyhook-controller"]; np == nil {
			t.Errorf("no NetworkPolicy for the controller")
		} else {
			sel, _, _ := unstructured.NestedStringMap(np.Object, "spec", "podSelector", "matchLabels")
			ingress, _, _ := unstructured.NestedSlice(np.Object, "spec", "ingress")
			if sel["app.kubernetes.io/component"] != "controller" || len(ingress) != 1 ||
				!strings.Contains(toString(ingress), "monitoring") || !strings.Contains(toString(ingress), "port:8080") {
				t.Errorf("controller NetworkPolicy selects %v, ingress %v", sel, ingress)
			}
		}
		if sm := objs["ServiceMonitor "+ns+"/keyhook"]; sm != nil {
			eps, _, _ := unstructured.NestedSlice(sm.Object, "spec", "endpoints")
			if len(eps) != 1 || eps[0].(map[string]any)["honorLabels"] != true {
				t.Errorf("ServiceMonitor endpoints %v: honorLabels must keep keyhook's namespace label (the ExternalSecret's)", eps)
			}
		}
		args = containerArgs(t, objs["Deployment "+ns+"/keyhook-controller"])
		for _, want := range []string{"--sync-workers=8", "--rollout-debounce=30s", "--leader-elect-lease-duration=30s"} {
			if !slices.Contains(args, want) {
				t.Errorf("controller args %v lack %s", args, want)
			}
		}
		for _, k := range []string{"ServiceMonitor " + ns + "/keyhook", "PrometheusRule " + ns + "/keyhook", "NetworkPolicy " + ns + "/keyhook", "ConfigMap " + ns + "/keyhook-dashboard"} {
			if objs[k] == nil {
				t.Errorf("no %s", k)
			}
		}
		// The alerts query the controller's metrics as well as the
		// webhook's: the ServiceMonitor must select a Service of each,
		// and each must serve a port named metrics.
		if sm := objs["ServiceMonitor "+ns+"/keyhook"]; sm != nil {
			raw, _, _ := unstructured.NestedMap(sm.Object, "spec", "selector")
			var ls metav1.LabelSelector
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &ls); err != nil {
				t.Fatal(err)
			}
			sel, err := metav1.LabelSelectorAsSelector(&ls)
			if err != nil {
				t.Fatal(err)
			}
			for _, svc := range []string{"keyhook-webhook", "keyhook-controller-metrics"} {
				o := objs["Service "+ns+"/"+svc]
				if o == nil {
					t.Errorf("no Service %s to scrape", svc)
					continue
				}
				if !sel.Matches(labels.Set(o.GetLabels())) {
					t.Errorf("the ServiceMonitor's selector %s does not select Service %s (labels %v)", sel, svc, o.GetLabels())
				}
				ports, _, _ := unstructured.NestedSlice(o.Object, "spec", "ports")
				if !slices.ContainsFunc(ports, func(p any) bool { return p.(map[string]any)["name"] == "metrics" }) {
					t.Errorf("Service %s has no port named metrics: %v", svc, ports)
				}
			}
		}
		if cm := objs["ConfigMap "+ns+"/keyhook-dashboard"]; cm != nil && cm.GetLabels()["grafana_dashboard"] != "1" {
			t.Errorf("dashboard ConfigMap labels %v lack grafana_dashboard", cm.GetLabels())
		}
	})
	t.Run("webhook.enableSync (former name)", func(t *testing.T) {
		args := containerArgs(t, render(t, ns, valueSets["webhook.enableSync (former name)"])["Deployment "+ns+"/keyhook-controller"])
		for _, want := range []string{"--enable-sync=false", "--enable-policy=false"} {
			if !slices.Contains(args, want) {
				t.Errorf("controller args %v lack %s", args, want)
			}
		}
	})
	t.Run("minimal", func(t *testing.T) {
		objs := render(t, ns, valueSets["minimal"])
		for _, k := range []string{"PodDisruptionBudget " + ns + "/keyhook-webhook", "PodDisruptionBudget " + ns + "/keyhook-controller"} {
			if objs[k] != nil {
				t.Errorf("%s rendered: one replica, or turned off", k)
			}
		}
		if args := containerArgs(t, objs["Deployment "+ns+"/keyhook-webhook"]); slices.ContainsFunc(args, func(a string) bool {
			return strings.HasPrefix(a, "--agent-image-") && !strings.HasPrefix(a, "--agent-image-pull-policy")
		}) {
			t.Errorf("agent.providerImages is null, yet the webhook has %v", args)
		}
		args := containerArgs(t, objs["Deployment "+ns+"/keyhook-controller"])
		for _, want := range []string{"--leader-elect=false", "--metrics-bind-address=0"} {
			if !slices.Contains(args, want) {
				t.Errorf("args %v lack %s", args, want)
			}
		}
	})
}

func podSpec(t *testing.T, d *unstructured.Unstructured) map[string]any {
	t.Helper()
	spec, ok, _ := unstructured.NestedMap(d.Object, "spec", "template", "spec")
	if !ok {
		t.Fatalf("%s has no pod spec", framework.ObjectKey(d))
	}
	return spec
}

// containerImage is the image and pull policy of a Deployment's container.
func containerImage(t *testing.T, d *unstructured.Unstructured) (image, pullPolicy string) {
	t.Helper()
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	if len(cs) != 1 {
		t.Fatalf("%s has %d containers", framework.ObjectKey(d), len(cs))
	}
	c := cs[0].(map[string]any)
	image, _ = c["image"].(string)
	pullPolicy, _ = c["imagePullPolicy"].(string)
	return image, pullPolicy
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func toString(v any) string { return fmt.Sprint(v) }

// chartCRDs are the chart's crds/ files as objects.
func chartCRDs() ([]*unstructured.Unstructured, error) {
	ch, err := framework.LoadChart()
	if err != nil {
		return nil, err
	}
	var all strings.Builder
	for _, f := range ch.CRDObjects() {
		all.WriteString("\n---\n")
		all.Write(f.File.Data)
	}
	return framework.DecodeObjects(all.String())
}

// The real API server accepts every object of every value set (server-side
// dry run, field validation strict), the ServiceMonitor and PrometheusRule
// against the Prometheus Operator's CRDs (its schema has honorLabels).
func TestChartServerSideDryRun(t *testing.T) {
	ctx := testContext(t)
	const ns = "keyhook-dryrun"
	ensureNamespace(ctx, t, ns)
	for name, vals := range valueSets {
		t.Run(name, func(t *testing.T) {
			objs, err := framework.RenderChart(ns, vals)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			for _, o := range objs {
				if err := kc.Create(ctx, o.DeepCopy(), client.DryRunAll, client.FieldValidation("Strict")); err != nil {
					t.Errorf("%s: %v", framework.ObjectKey(o), err)
				}
				n++
			}
			t.Logf("%d objects accepted by the API server", n)
		})
	}
}

// The chart and manifests/ are one install: with the settings manifests/
// spells out (the chart's defaults), both render the same objects, labels
// Helm adds aside. manifests/ also creates the Namespace, which helm
// install --create-namespace does.
func TestChartMatchesManifests(t *testing.T) {
	for dir, vals := range map[string]map[string]any{
		"manifests":              nil,
		"manifests/self-managed": {"tls": map[string]any{"mode": "selfManaged"}},
	} {
		t.Run(dir, func(t *testing.T) {
			out, err := exec.Command(filepath.Join(framework.TestenvDir(), "kubectl"), "kustomize", filepath.Join(framework.RepoRoot(), dir)).Output()
			if err != nil {
				t.Fatalf("kubectl kustomize %s: %v", dir, err)
			}
			kobjs, err := framework.DecodeObjects(string(out))
			if err != nil {
				t.Fatal(err)
			}
			cobjs, err := framework.RenderChart("keyhook-system", vals)
			if err != nil {
				t.Fatal(err)
			}
			// The chart's CRDs are files, not templates: compare them too.
			crds, err := chartCRDs()
			if err != nil {
				t.Fatal(err)
			}
			cobjs = append(cobjs, crds...)
			want, got := map[string]any{}, map[string]any{}
			for _, o := range kobjs {
				if o.GetKind() == "Namespace" {
					continue
				}
				want[framework.ObjectKey(o)] = normalize(o)
			}
			for _, o := range cobjs {
				got[framework.ObjectKey(o)] = normalize(o)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s and the chart differ (-%s +chart):\n%s", dir, dir, diff)
			}
		})
	}
}

// helmOnlyLabels are the labels the chart adds for Helm's bookkeeping.
var helmOnlyLabels = []string{"app.kubernetes.io/instance", "app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"}

func normalize(o *unstructured.Unstructured) map[string]any {
	o = o.DeepCopy()
	strip := func(fields ...string) {
		l, ok, _ := unstructured.NestedStringMap(o.Object, fields...)
		if !ok {
			return
		}
		for _, k := range helmOnlyLabels {
			delete(l, k)
		}
		if len(l) == 0 {
			unstructured.RemoveNestedField(o.Object, fields...)
			return
		}
		_ = unstructured.SetNestedStringMap(o.Object, l, fields...)
	}
	strip("metadata", "labels")
	strip("spec", "template", "metadata", "labels")
	// manifests/ labels only what selects pods; the chart labels every
	// object it owns with its name and component.
	if l := o.GetLabels(); l != nil {
		delete(l, "app.kubernetes.io/name")
		delete(l, "app.kubernetes.io/component")
		o.SetLabels(l)
		if len(l) == 0 {
			unstructured.RemoveNestedField(o.Object, "metadata", "labels")
		}
	}
	return o.Object
}
