package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/tests/framework"
)

// secretValue returns a value that cannot appear anywhere by chance, so that
// finding it in a log or an object proves a leak.
func secretValue(t *testing.T, what string) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return what + "-" + hex.EncodeToString(b)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// tenant is a namespace with an "app" service account that a Vault role lets
// read secret/<namespace>/*, and a SecretStore "vault" using that role.
func tenant(ctx context.Context, t *testing.T, prefix string) string {
	t.Helper()
	ns, err := vault.Tenant(ctx, cluster, prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

// runAgent runs pod's init-agent as the kubelet would — the binary of the
// image the webhook injected — and fails the test if it fails; it returns
// what the agent printed and the pod's root directory.
func runAgent(ctx context.Context, t *testing.T, pod *corev1.Pod) (output, root string) {
	t.Helper()
	root = t.TempDir()
	run, err := framework.RunAgent(ctx, cluster, agentBinFor(t, pod), pod, root)
	if err != nil {
		t.Fatal(err)
	}
	if run.Err != nil {
		t.Fatalf("agent failed: %v\n%s", run.Err, run.Output)
	}
	return run.Output, root
}

// agentBinFor is the agent binary of the image injected into pod.
func agentBinFor(t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	for _, c := range pod.Spec.InitContainers {
		if c.Name == mutate.AgentContainerName {
			bin, ok := agentBins[c.Image]
			if !ok {
				t.Fatalf("the webhook injected image %q, which no agent binary of the tests is", c.Image)
			}
			return bin
		}
	}
	t.Fatalf("pod %s has no %s init container", pod.Name, mutate.AgentContainerName)
	return ""
}

// wantFiles checks the files the agent wrote under root's secret directory
// (path relative to it → value), without printing a value.
func wantFiles(t *testing.T, root string, want map[string]string) {
	t.Helper()
	for file, v := range want {
		got, err := os.ReadFile(filepath.Join(root, "var/run/secrets/keyhook", file))
		if err != nil {
			t.Error(err)
			continue
		}
		if string(got) != v {
			t.Errorf("%s differs from the provider", file)
		}
	}
}

func externalSecret(ns, name string, spec v1alpha1.ExternalSecretSpec) *v1alpha1.ExternalSecret {
	if spec.SecretStoreRef.Name == "" {
		spec.SecretStoreRef = v1alpha1.SecretStoreRef{Name: "vault", Kind: v1alpha1.SecretStoreKindNamespaced}
	}
	return &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: spec}
}

func data(key, remote, property, version string) v1alpha1.ExternalSecretData {
	return v1alpha1.ExternalSecretData{SecretKey: key, RemoteRef: v1alpha1.RemoteRef{Key: remote, Property: property, Version: version}}
}

// waitForPod returns the first pod with the given label, as stored.
func waitForPod(ctx context.Context, t *testing.T, ns string, sel map[string]string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		pods := &corev1.PodList{}
		if err := cluster.Client.List(ctx, pods, client.InNamespace(ns), client.MatchingLabels(sel)); err != nil {
			return false, err
		}
		if len(pods.Items) == 0 {
			return false, nil
		}
		pod = &pods.Items[0]
		return true, nil
	})
	if err != nil {
		events := &corev1.EventList{}
		_ = cluster.Client.List(ctx, events, client.InNamespace(ns))
		for _, e := range events.Items {
			t.Logf("event %s %s: %s", e.InvolvedObject.Kind, e.Reason, e.Message)
		}
		t.Fatalf("no pod with labels %v in %s: %v", sel, ns, err)
	}
	return pod
}

func TestInjectDeploymentFromVault(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "inject")

	dbUser, dbPassV1, dbPass := "app", secretValue(t, "db-password-v1"), secretValue(t, "db-password")
	apiToken, nested := secretValue(t, "api-token"), secretValue(t, "nested")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"username": dbUser, "password": dbPassV1}); err != nil {
		t.Fatal(err)
	}
	if err := vault.Put(ctx, ns+"/db", map[string]any{"username": dbUser, "password": dbPass}); err != nil {
		t.Fatal(err)
	}
	if err := vault.Put(ctx, ns+"/api", map[string]any{"token": apiToken, "region": "eu-west-1", "config": map[string]any{"nested": map[string]any{"value": nested}}}); err != nil {
		t.Fatal(err)
	}
	values := []string{dbPassV1, dbPass, apiToken, nested}

	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "db-creds", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{
			data("username", ns+"/db", "username", ""),
			data("password", ns+"/db", "password", ""),
			data("password-previous", ns+"/db", "password", "1"),
		}}),
		externalSecret(ns, "api-key", v1alpha1.ExternalSecretSpec{
			DataFrom: []v1alpha1.ExternalSecretDataFrom{{Extract: &v1alpha1.ExternalSecretExtract{Key: ns + "/api", Property: "config.nested"}}},
			Data:     []v1alpha1.ExternalSecretData{data("token", ns+"/api", "token", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}

	labels := map[string]string{"app": "web"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{"keyhook.dev/inject": "db-creds, api-key"}},
				Spec: corev1.PodSpec{
					ServiceAccountName: "app",
					InitContainers:     []corev1.Container{{Name: "migrate", Image: "example.com/migrate:1"}},
					Containers: []corev1.Container{
						{Name: "web", Image: "example.com/web:1", Env: []corev1.EnvVar{{Name: "MODE", Value: "prod"}}},
						{Name: "sidecar", Image: "example.com/sidecar:1"},
					},
				},
			},
		},
	}
	if err := cluster.Client.Create(ctx, deploy); err != nil {
		t.Fatal(err)
	}
	pod := waitForPod(ctx, t, ns, labels)

	// The pod the controller-manager created went through the webhook.
	if got := pod.Annotations["keyhook.dev/status"]; got != "injected" {
		t.Fatalf("pod annotation keyhook.dev/status = %q, want injected", got)
	}
	var initNames []string
	for _, c := range pod.Spec.InitContainers {
		initNames = append(initNames, c.Name)
	}
	if diff := cmp.Diff([]string{"keyhook-agent", "migrate"}, initNames); diff != "" {
		t.Errorf("init containers (-want +got):\n%s", diff)
	}
	agent := pod.Spec.InitContainers[0]
	if agent.Image != agentImage {
		t.Errorf("agent image = %q, want %q", agent.Image, agentImage)
	}
	sc := agent.SecurityContext
	if sc == nil || !ptr.Deref(sc.RunAsNonRoot, false) || !ptr.Deref(sc.ReadOnlyRootFilesystem, false) ||
		ptr.Deref(sc.AllowPrivilegeEscalation, true) || sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" {
		t.Errorf("agent security context is not locked down: %+v", sc)
	}

	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	if v := volumes[mutate.SecretsVolumeName]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("volume %s is not an in-memory emptyDir: %+v", mutate.SecretsVolumeName, v.VolumeSource)
	}
	tok := volumes[mutate.TokenVolumeName]
	if tok.Projected == nil || len(tok.Projected.Sources) != 1 || tok.Projected.Sources[0].ServiceAccountToken == nil ||
		tok.Projected.Sources[0].ServiceAccountToken.Audience != "vault" {
		t.Errorf("volume %s is not a projected token with audience vault: %+v", mutate.TokenVolumeName, tok.VolumeSource)
	}
	wantMount := corev1.VolumeMount{Name: mutate.SecretsVolumeName, MountPath: "/var/run/secrets/keyhook", ReadOnly: true}
	for _, c := range append(pod.Spec.InitContainers[1:], pod.Spec.Containers...) {
		found := false
		for _, m := range c.VolumeMounts {
			if m.Name == wantMount.Name && m.MountPath == wantMount.MountPath && m.ReadOnly {
				found = true
			}
			if m.Name == mutate.TokenVolumeName {
				t.Errorf("container %s mounts the agent's token volume", c.Name)
			}
		}
		if !found {
			t.Errorf("container %s lacks the read-only secret mount %+v: %+v", c.Name, wantMount, c.VolumeMounts)
		}
	}

	// The plan names what to fetch, never a value.
	var p plan.Plan
	if len(agent.Env) != 1 || agent.Env[0].Name != plan.EnvVar {
		t.Fatalf("agent env = %+v, want only %s", agent.Env, plan.EnvVar)
	}
	if err := json.Unmarshal([]byte(agent.Env[0].Value), &p); err != nil {
		t.Fatal(err)
	}
	wantPlan := plan.Plan{Version: plan.Version, FileMode: 0o400, Secrets: []plan.Secret{
		{
			Name: "db-creds", Dir: "/var/run/secrets/keyhook/db-creds",
			Store: plan.Store{Kind: "SecretStore", Name: "vault", Vault: &plan.Vault{Server: vault.Addr, Path: "secret", KVVersion: 2,
				Kubernetes: &plan.VaultKubernetes{MountPath: "kubernetes", Role: ns, TokenPath: mutate.TokenDir + "/token-0"}}},
			Data: []plan.Data{
				{SecretKey: "username", Ref: plan.Ref{Key: ns + "/db", Property: "username"}},
				{SecretKey: "password", Ref: plan.Ref{Key: ns + "/db", Property: "password"}},
				{SecretKey: "password-previous", Ref: plan.Ref{Key: ns + "/db", Property: "password", Version: "1"}},
			},
		},
		{
			Name: "api-key", Dir: "/var/run/secrets/keyhook/api-key",
			Store: plan.Store{Kind: "SecretStore", Name: "vault", Vault: &plan.Vault{Server: vault.Addr, Path: "secret", KVVersion: 2,
				Kubernetes: &plan.VaultKubernetes{MountPath: "kubernetes", Role: ns, TokenPath: mutate.TokenDir + "/token-0"}}},
			Data:     []plan.Data{{SecretKey: "token", Ref: plan.Ref{Key: ns + "/api", Property: "token"}}},
			DataFrom: []plan.DataFrom{{Extract: &plan.Ref{Key: ns + "/api", Property: "config.nested"}}},
		},
	}}
	if diff := cmp.Diff(wantPlan, p); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}

	// Run the agent as the kubelet would: the stored container's args and
	// env, a token from TokenRequest for the pod's service account.
	root := t.TempDir()
	run, err := framework.RunAgent(ctx, cluster, agentBin, pod, root)
	if err != nil {
		t.Fatal(err)
	}
	if run.Err != nil {
		t.Fatalf("agent failed: %v\n%s", run.Err, run.Output)
	}
	t.Logf("agent ran in %s", run.Duration.Round(time.Millisecond))
	wantFiles := map[string]string{
		"db-creds/username":          dbUser,
		"db-creds/password":          dbPass,
		"db-creds/password-previous": dbPassV1,
		"api-key/token":              apiToken,
		"api-key/value":              nested,
	}
	secretsDir := filepath.Join(root, "var/run/secrets/keyhook")
	gotFiles := map[string]string{}
	err = filepath.Walk(secretsDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(secretsDir, path)
		if info.Mode().Perm() != 0o400 {
			t.Errorf("%s has mode %#o, want 0400", rel, info.Mode().Perm())
		}
		b, err := os.ReadFile(path)
		gotFiles[rel] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantFiles, gotFiles); diff != "" {
		t.Errorf("files written by the agent differ from Vault (-want +got):\n%s", diff)
	}

	if m := scrape(t, webhook.MetricsURL); !strings.Contains(m, `keyhook_admissions_total{result="injected"}`) {
		t.Errorf("metrics do not count the injection")
	}

	// No value anywhere a user or an attacker with read access would look.
	podJSON, _ := json.Marshal(pod)
	events := &corev1.EventList{}
	if err := cluster.Client.List(ctx, events, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	eventsJSON, _ := json.Marshal(events)
	for where, text := range map[string]string{
		"stored pod":             string(podJSON),
		"events":                 string(eventsJSON),
		"webhook log":            webhook.Proc.Output(),
		"keyhook-controller log": controller.Proc.Output(),
		"agent output":           run.Output,
		"controller log":         cluster.KCM.Output(),
	} {
		for _, v := range values {
			if strings.Contains(text, v) {
				t.Errorf("a secret value appears in the %s", where)
			}
		}
	}
}

func TestInjectFileModeWithFSGroup(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "fsgroup")
	value := secretValue(t, "shared")
	if err := vault.Put(ctx, ns+"/shared", map[string]any{"value": value}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "shared", v1alpha1.ExternalSecretSpec{
		Data: []v1alpha1.ExternalSecretData{data("value", ns+"/shared", "value", "")},
	})); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "grouped", Annotations: map[string]string{
			"keyhook.dev/inject": "shared", "keyhook.dev/mount-path": "/etc/app/secrets",
		}},
		Spec: corev1.PodSpec{
			ServiceAccountName: "app",
			SecurityContext:    &corev1.PodSecurityContext{FSGroup: ptr.To[int64](2000)},
			Containers:         []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
		},
	}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	run, err := framework.RunAgent(ctx, cluster, agentBin, pod, root)
	if err != nil {
		t.Fatal(err)
	}
	if run.Err != nil {
		t.Fatalf("agent failed: %v\n%s", run.Err, run.Output)
	}
	file := filepath.Join(root, "etc/app/secrets/shared/value")
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o440 {
		t.Errorf("mode = %#o, want 0440 when the pod sets fsGroup", info.Mode().Perm())
	}
	if b, _ := os.ReadFile(file); string(b) != value {
		t.Errorf("file content differs from Vault")
	}
}

func TestAgentFailsWithReasonWhenVaultIsDown(t *testing.T) {
	ctx := testContext(t)
	// A Vault of its own, so that stopping it leaves the others' alone.
	v, err := framework.StartVault(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Stop() })
	ns, err := cluster.Namespace(ctx, "down", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "vault"},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: v.Addr, Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "app"}},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db-creds", v1alpha1.ExternalSecretSpec{
		Data: []v1alpha1.ExternalSecretData{data("password", "db", "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app", Annotations: map[string]string{"keyhook.dev/inject": "db-creds"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if err := v.Stop(); err != nil {
		t.Fatal(err)
	}

	const deadline = 3 * time.Second
	run, err := framework.RunAgent(ctx, cluster, agentBin, pod, t.TempDir(), "--deadline="+deadline.String())
	if err != nil {
		t.Fatal(err)
	}
	if run.Err == nil {
		t.Fatalf("agent succeeded with Vault down:\n%s", run.Output)
	}
	// It retried until its deadline, not forever: a generous bound that only
	// a hung agent exceeds.
	if run.Duration > deadline+10*time.Second {
		t.Errorf("agent ran %s with a deadline of %s", run.Duration, deadline)
	}
	lines := strings.Split(strings.TrimSpace(run.Output), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{"error", "ExternalSecret db-creds", "gave up at the deadline", "connection refused"} {
		if !strings.Contains(last, want) {
			t.Errorf("last line %q does not say %q", last, want)
		}
	}
	if len(lines) < 2 {
		t.Errorf("agent did not retry before giving up:\n%s", run.Output)
	}
}

func TestAdmissionDenials(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "deny")
	other := tenant(ctx, t, "other")
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(other, "db", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("k", other+"/db", "", "")}}),
		externalSecret(ns, "via-cluster-store", v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "platform-" + ns, Kind: v1alpha1.SecretStoreKindCluster},
			Data:           []v1alpha1.ExternalSecretData{data("k", ns+"/db", "", "")},
		}),
		externalSecret(ns, "no-store", v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "missing", Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("k", ns+"/db", "", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	// A cluster store that admits only the "other" tenant.
	if err := cluster.Client.Create(ctx, &v1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: "platform-" + ns},
		Spec: v1alpha1.SecretStoreSpec{
			Provider:   v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: vault.Addr, Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: "x"}}}},
			Conditions: []v1alpha1.ClusterSecretStoreCondition{{Namespaces: []string{other}}},
		},
	}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, inject string
		want         []string
	}{
		{"cross-namespace reference", other + "/db", []string{"keyhook.dev/inject", `refers to namespace "` + other + `"`, "only ExternalSecrets of its own namespace"}},
		{"unknown ExternalSecret", "nope", []string{"keyhook.dev/inject", `ExternalSecret "nope" not found in namespace "` + ns + `"`, "create it or fix the name"}},
		{"malformed annotation", "Bad_Name", []string{"keyhook.dev/inject", `"Bad_Name" is not an ExternalSecret name`, "separated by commas"}},
		{"store does not admit the namespace", "via-cluster-store", []string{`ClusterSecretStore "platform-` + ns + `"`, `do not admit namespace "` + ns + `"`}},
		{"missing store", "no-store", []string{`SecretStore "missing", which does not exist`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "denied-", Annotations: map[string]string{"keyhook.dev/inject": tc.inject}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
			}
			err := cluster.Client.Create(ctx, pod)
			if err == nil {
				t.Fatalf("pod admitted; want a denial")
			}
			msg := err.Error()
			if !strings.Contains(msg, "denied the request") {
				t.Errorf("error is not an admission denial: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("denial %q does not say %q", msg, w)
				}
			}
		})
	}

	if m := scrape(t, webhook.MetricsURL); !strings.Contains(m, `keyhook_admissions_total{result="denied"}`) {
		t.Errorf("metrics do not count the denials")
	}

	// The same tenant's own ExternalSecret, through the cluster store once
	// it admits the namespace, is admitted.
	css := &v1alpha1.ClusterSecretStore{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Name: "platform-" + ns}, css); err != nil {
		t.Fatal(err)
	}
	if err := updateLatest(ctx, css, func(css *v1alpha1.ClusterSecretStore) {
		css.Spec.Conditions = append(css.Spec.Conditions, v1alpha1.ClusterSecretStoreCondition{NamespaceRegexes: []string{"deny-.*"}})
	}); err != nil {
		t.Fatal(err)
	}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "admitted-", Annotations: map[string]string{"keyhook.dev/inject": "via-cluster-store"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
		}
		err := cluster.Client.Create(ctx, pod)
		return err == nil, err
	})
	if err != nil {
		t.Errorf("pod not admitted once the store admits the namespace: %v", err)
	}

	// A pod that does not ask is never sent to the webhook, and is created.
	plain := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "plain"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if err := cluster.Client.Create(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if len(plain.Spec.InitContainers) != 0 || plain.Annotations["keyhook.dev/status"] != "" {
		t.Errorf("a pod without the annotation was mutated: %+v", plain.Spec.InitContainers)
	}
}
