package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// chartQueries are the PromQL expressions of the chart's Grafana dashboard
// and PrometheusRule, by where they come from.
func chartQueries(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	raw, err := os.ReadFile(filepath.Join(framework.ChartDir(), "dashboards", "keyhook.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for i, tg := range p.Targets {
			out["dashboard panel "+p.Title+" #"+string(rune('A'+i))] = tg.Expr
		}
	}
	objs, err := framework.RenderChart("keyhook-system", map[string]any{"metrics": map[string]any{"prometheusRule": map[string]any{"enabled": true}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if o.GetKind() != "PrometheusRule" {
			continue
		}
		groups, _, _ := unstructured.NestedSlice(o.Object, "spec", "groups")
		for _, g := range groups {
			rules, _, _ := unstructured.NestedSlice(g.(map[string]any), "rules")
			for _, r := range rules {
				alert, _, _ := unstructured.NestedString(r.(map[string]any), "alert")
				expr, _, _ := unstructured.NestedString(r.(map[string]any), "expr")
				out["alert "+alert] = expr
			}
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d queries in the dashboard and alerts: %v", len(out), out)
	}
	return out
}

var (
	// selectorRE finds the metric selectors of an expression: a metric
	// name of keyhook, controller-runtime or the API server, and its
	// label matchers.
	selectorRE = regexp.MustCompile(`\b((?:keyhook|controller_runtime|apiserver)_[a-zA-Z0-9_]+)(\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*"`)
	// sampleRE is one sample line of the Prometheus text format.
	sampleRE = regexp.MustCompile(`(?m)^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? `)
	labelRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

// exported maps every metric name of a /metrics page to the label names its
// samples carry.
func exported(page string) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, m := range sampleRE.FindAllStringSubmatch(page, -1) {
		if out[m[1]] == nil {
			out[m[1]] = map[string]bool{}
		}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			out[m[1]][l[1]] = true
		}
	}
	return out
}

// TestDashboardAndAlertMetricsExist: every metric the chart's dashboard and
// alerts query, with every label they select on, is one that a running
// keyhook (or, for apiserver_*, the API server) exports — after the
// activity each metric records: a sync, a failing sync, an injection, a
// rollout and a webhook entry failing open.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	ctx := testContext(t)
	queries := chartQueries(t)
	ns := tenant(ctx, t, "metrics")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v1")}); err != nil {
		t.Fatal(err)
	}
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		}),
		// Fails: feeds keyhook_last_sync_state -1 and provider errors.
		externalSecret(ns, "missing", v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("password", ns+"/missing", "password", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	waitForES(ctx, t, ns, "db", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	if err := cluster.Client.Create(ctx, deployment(ns, "web", annotated("keyhook.dev/rollout", "auto"), envFromSecret("db"))); err != nil {
		t.Fatal(err)
	}
	waitRecorded(ctx, t, ns, "web", "secret/db")
	waitReplicaSets(ctx, t, ns, "web", 1)
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "v2")}); err != nil {
		t.Fatal(err)
	}
	waitReplicaSets(ctx, t, ns, "web", 2)

	// An injection through the real admission chain.
	pod := plainPod(ns, "inject", map[string]string{"keyhook.dev/inject": "db"}, nil)
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	// A webhook entry named as keyhook's fail-open ones, pointing nowhere,
	// for this namespace only: the API server admits the pod and counts it.
	failOpen := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "metrics-fail-open-" + ns},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    "pods.keyhook.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://127.0.0.1:1/mutate-v1-pod")},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
			FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](2),
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
		}},
	}
	if err := cluster.Client.Create(ctx, failOpen); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(ctx, failOpen) })
	before := apiserverFailOpen(ctx, t, "pods.keyhook.dev")
	err := framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
		p := plainPod(ns, "fail-open", nil, nil)
		if err := cluster.Client.Create(ctx, p); err != nil {
			return false, err
		}
		return apiserverFailOpen(ctx, t, "pods.keyhook.dev") > before, nil
	})
	if err != nil {
		t.Fatalf("the API server never counted a fail-open: %v", err)
	}
	// The failing ExternalSecret has been tried by now.
	waitForES(ctx, t, ns, "missing", "not Ready", readyIs(metav1.ConditionFalse, "SecretSyncedError"))

	// The webhook's metrics and the controller's, as Prometheus scrapes both.
	keyhook := exported(scrape(t, webhook.MetricsURL) + scrape(t, controller.MetricsURL))
	raw, err := cluster.Clientset.RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	apiserver := exported(string(raw))
	names := map[string]bool{}
	for where, q := range queries {
		sels := selectorRE.FindAllStringSubmatch(q, -1)
		if len(sels) == 0 {
			t.Errorf("%s queries no keyhook metric: %s", where, q)
		}
		for _, s := range sels {
			name := s[1]
			names[name] = true
			page, from := keyhook, "keyhook"
			if strings.HasPrefix(name, "apiserver_") {
				page, from = apiserver, "the API server"
			}
			labels, ok := page[name]
			if !ok {
				t.Errorf("%s queries %s, which %s does not export", where, name, from)
				continue
			}
			for _, m := range matcherRE.FindAllStringSubmatch(s[2], -1) {
				if !labels[m[1]] {
					t.Errorf("%s selects %s by label %q, which its samples do not carry (%v)", where, name, m[1], keysOf(labels))
				}
			}
		}
	}
	t.Logf("%d queries use %d metrics: %v", len(queries), len(names), keysOf(names))
}

func keysOf(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
