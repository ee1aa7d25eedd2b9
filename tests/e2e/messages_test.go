package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/tests/framework"
)

// agentFailure runs pod's init-agent, which must fail, and returns its one
// line of output: the README promises that a failure is one line naming the
// ExternalSecret, the key and the reason, in the log and in the termination
// message the kubelet shows.
func agentFailure(ctx context.Context, t *testing.T, pod *corev1.Pod) string {
	t.Helper()
	run, err := framework.RunAgent(ctx, cluster, agentBin, pod, t.TempDir(), "--deadline=20s")
	if err != nil {
		t.Fatal(err)
	}
	if run.Err == nil {
		t.Fatalf("agent succeeded:\n%s", run.Output)
	}
	out := strings.TrimSuffix(run.Output, "\n")
	if strings.ContainsAny(out, "\n\r\t") {
		t.Errorf("agent output is not one line:\n%s", run.Output)
	}
	const prefix = "keyhook-agent: error: "
	if !strings.HasPrefix(out, prefix) {
		t.Errorf("agent output %q does not start with %q", out, prefix)
	}
	if want := strings.TrimPrefix(out, prefix); run.TerminationMessage != want {
		t.Errorf("termination message %q, want the error line %q", run.TerminationMessage, want)
	}
	return out
}

// syncFailure waits for the ExternalSecret's Ready=False with a message
// that says about, and checks that the message, and the events the sync
// emitted, are one line.
func syncFailure(ctx context.Context, t *testing.T, ns, name, about string) string {
	t.Helper()
	notReady := readyIs(metav1.ConditionFalse, "SecretSyncedError")
	es := waitForES(ctx, t, ns, name, "not Ready saying "+about, func(es *v1alpha1.ExternalSecret) bool {
		return notReady(es) && strings.Contains(meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady).Message, about)
	})
	msg := meta.FindStatusCondition(es.Status.Conditions, v1alpha1.ConditionReady).Message
	if strings.ContainsAny(msg, "\n\r\t") {
		t.Errorf("status message of %s is not one line: %q", name, msg)
	}
	var evs eventsv1.EventList
	if err := cluster.Client.List(ctx, &evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	for _, e := range evs.Items {
		if e.Regarding.Name == name && strings.ContainsAny(e.Note, "\n\r\t") {
			t.Errorf("event %s of %s is not one line: %q", e.Reason, name, e.Note)
		}
	}
	return msg
}

func injectedPod(ctx context.Context, t *testing.T, ns, name, inject string) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: map[string]string{"keyhook.dev/inject": inject}},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	return pod
}

func wantAll(t *testing.T, what, msg string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(msg, w) {
			t.Errorf("%s %q does not say %q", what, msg, w)
		}
	}
}

// A Vault 403 (the pod's role may read secret/<ns>/*, not the key asked
// for) is one line naming the ExternalSecret, the key, the path and Vault's
// reason, in the agent and in the sync: Vault answers with go-multierror
// text ("1 error occurred:\n\t* permission denied\n\n").
func TestVaultDeniedIsOneLine(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "denied")
	value := secretValue(t, "elsewhere")
	remote := "elsewhere-" + ns + "/db"
	if err := vault.Put(ctx, remote, map[string]any{"password": value}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, externalSecret(ns, "db-creds", v1alpha1.ExternalSecretSpec{
		Data: []v1alpha1.ExternalSecretData{data("password", remote, "password", "")},
	})); err != nil {
		t.Fatal(err)
	}
	key, reason := `key "password" (remote key "`+remote+`"): `, `reading secret/`+remote+`: Vault answered 403: permission denied`

	line := agentFailure(ctx, t, injectedPod(ctx, t, ns, "app", "db-creds"))
	if full := "keyhook-agent: error: ExternalSecret db-creds: " + key + reason; line != full {
		t.Errorf("agent failure\n%q, want\n%q", line, full)
	}

	msg := syncFailure(ctx, t, ns, "db-creds", "403")
	if full := "could not sync: " + key + "SecretStore vault: " + reason; msg != full {
		t.Errorf("status message\n%q, want\n%q", msg, full)
	}
	if strings.Contains(line+msg, value) {
		t.Error("a message shows the secret value")
	}
	assertNoValues(ctx, t, ns, value)
}

// A key written as the KV v2 API path (secret/data/<path>, as Vault's HTTP
// API and `vault read` spell it) is refused with what to write: at
// admission, and — for an ExternalSecret admitted before its store existed —
// by the agent and the sync, without reading another path. A key that starts
// with the mount (secret/<path>, as `vault kv get` spells it) is read as
// written, and its 403 says what to write.
func TestVaultKeyWrittenAsAPIPath(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "apipath")
	if err := vault.Put(ctx, ns+"/db", map[string]any{"password": secretValue(t, "db")}); err != nil {
		t.Fatal(err)
	}
	apiPath, cliPath, right := "secret/data/"+ns+"/db", "secret/"+ns+"/db", ns+"/db"

	err := cluster.Client.Create(ctx, externalSecret(ns, "api-path", v1alpha1.ExternalSecretSpec{
		Data: []v1alpha1.ExternalSecretData{data("password", apiPath, "password", "")},
	}))
	if err == nil {
		t.Fatal("an ExternalSecret whose key is a KV v2 API path was admitted")
	}
	wantAll(t, "denial", err.Error(), "denied the request", "spec.data[0].remoteRef.key", `relative to the store's mount "secret"`, `write "`+right+`"`)

	// Admitted before its store exists (kubectl apply of a directory, GitOps).
	late := &v1alpha1.SecretStore{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "vault"}, late); err != nil {
		t.Fatal(err)
	}
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "api-path", v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "late", Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("password", apiPath, "password", "")},
		}),
		externalSecret(ns, "cli-path", v1alpha1.ExternalSecretSpec{
			Data: []v1alpha1.ExternalSecretData{data("password", cliPath, "password", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late"}, Spec: late.Spec}); err != nil {
		t.Fatal(err)
	}
	// (An update of api-path now, a force-sync say, is denied like a create.)

	apiKey, apiReason := `key "password" (remote key "`+apiPath+`"): `, `written as the KV v2 API path of "`+right+
		`": keys are relative to the store's mount "secret", without "data/"; write "`+right+`"`
	if line, want := agentFailure(ctx, t, injectedPod(ctx, t, ns, "api-path", "api-path")), "keyhook-agent: error: ExternalSecret api-path: "+apiKey+apiReason; line != want {
		t.Errorf("agent failure\n%q, want\n%q", line, want)
	}
	if msg, want := syncFailure(ctx, t, ns, "api-path", "API path"), "could not sync: "+apiKey+"SecretStore late: "+apiReason; msg != want {
		t.Errorf("status message\n%q, want\n%q", msg, want)
	}

	cliKey, cliReason := `key "password" (remote key "`+cliPath+`"): `, `reading secret/`+cliPath+`: Vault answered 403: permission denied; `+
		`keys are relative to the store's mount "secret": if you meant the secret at `+cliPath+`, write "`+right+`"`
	if line, want := agentFailure(ctx, t, injectedPod(ctx, t, ns, "cli-path", "cli-path")), "keyhook-agent: error: ExternalSecret cli-path: "+cliKey+cliReason; line != want {
		t.Errorf("agent failure\n%q, want\n%q", line, want)
	}
	if msg, want := syncFailure(ctx, t, ns, "cli-path", "403"), "could not sync: "+cliKey+"SecretStore vault: "+cliReason; msg != want {
		t.Errorf("status message\n%q, want\n%q", msg, want)
	}

	// Written as the README says, the same secret reads.
	fixed := externalSecret(ns, "right", v1alpha1.ExternalSecretSpec{Data: []v1alpha1.ExternalSecretData{data("password", right, "password", "")}})
	if err := cluster.Client.Create(ctx, fixed); err != nil {
		t.Fatal(err)
	}
	waitForES(ctx, t, ns, "right", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
}

// A namespaced SecretStore whose tokenSecretRef (or any Secret reference)
// names another namespace is denied at admission, saying why and what to use
// instead; it used to be admitted and read from the store's own namespace.
func TestSecretStoreForeignSecretDenied(t *testing.T) {
	ctx := testContext(t)
	ns, err := cluster.Namespace(ctx, "foreign", nil)
	if err != nil {
		t.Fatal(err)
	}
	spec := func(secretNS string) v1alpha1.SecretStoreSpec {
		return v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{
			Server: vault.Addr,
			Auth:   v1alpha1.VaultAuth{TokenSecretRef: &v1alpha1.SecretKeySelector{Name: "vault-token", Namespace: secretNS, Key: "token"}},
		}}}
	}
	err = cluster.Client.Create(ctx, &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "foreign"}, Spec: spec("kube-system")})
	if err == nil {
		t.Fatal("a SecretStore naming a Secret of kube-system was admitted")
	}
	wantAll(t, "denial", err.Error(), "denied the request", "spec.provider.vault.auth.tokenSecretRef.namespace",
		`a namespaced SecretStore can only reference Secrets in its own namespace "`+ns+`"`, "use a ClusterSecretStore")

	// Its own namespace, or none, is admitted; an update that moves the
	// reference away is denied like a create.
	own := &v1alpha1.SecretStore{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "own"}, Spec: spec(ns)}
	if err := cluster.Client.Create(ctx, own); err != nil {
		t.Fatalf("a SecretStore naming a Secret of its own namespace was denied: %v", err)
	}
	// The controller's health probe writes the store's status meanwhile.
	if err := updateLatest(ctx, own, func(s *v1alpha1.SecretStore) {
		s.Spec.Provider.Vault.Auth.TokenSecretRef.Namespace = "default"
	}); err == nil || !strings.Contains(err.Error(), "can only reference Secrets in its own namespace") {
		t.Errorf("an update naming another namespace: err = %v, want the denial", err)
	}
	// A ClusterSecretStore names the namespace of its Secrets.
	css := &v1alpha1.ClusterSecretStore{ObjectMeta: metav1.ObjectMeta{Name: "foreign-" + ns}, Spec: spec(ns)}
	if err := cluster.Client.Create(ctx, css); err != nil {
		t.Errorf("a ClusterSecretStore naming a Secret's namespace was denied: %v", err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), css) })
}

// deletionPolicy is about the remote data going away: Retain (the default)
// keeps the last good Secret and says what happened. Deleting the
// ExternalSecret deletes its Secret with creationPolicy Owner (garbage
// collection of the owner reference) and leaves it with Orphan, whatever
// the deletionPolicy.
func TestSyncRetainAndDeletion(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "retain")
	value := secretValue(t, "kept")
	for _, k := range []string{"gone-default", "gone-retain"} {
		if err := vault.Put(ctx, ns+"/"+k, map[string]any{"k": value}); err != nil {
			t.Fatal(err)
		}
	}
	if err := vault.Put(ctx, ns+"/stays", map[string]any{"k": value}); err != nil {
		t.Fatal(err)
	}
	second := &metav1.Duration{Duration: time.Second}
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "gone-default", v1alpha1.ExternalSecretSpec{RefreshInterval: second,
			Data: []v1alpha1.ExternalSecretData{data("k", ns+"/gone-default", "k", "")}}),
		externalSecret(ns, "gone-retain", v1alpha1.ExternalSecretSpec{RefreshInterval: second,
			Target: v1alpha1.ExternalSecretTarget{DeletionPolicy: v1alpha1.DeletionPolicyRetain},
			Data:   []v1alpha1.ExternalSecretData{data("k", ns+"/gone-retain", "k", "")}}),
		externalSecret(ns, "owned", v1alpha1.ExternalSecretSpec{
			Target: v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyOwner, DeletionPolicy: v1alpha1.DeletionPolicyRetain},
			Data:   []v1alpha1.ExternalSecretData{data("k", ns+"/stays", "k", "")}}),
		externalSecret(ns, "orphan", v1alpha1.ExternalSecretSpec{
			Target: v1alpha1.ExternalSecretTarget{CreationPolicy: v1alpha1.CreationPolicyOrphan, DeletionPolicy: v1alpha1.DeletionPolicyRetain},
			Data:   []v1alpha1.ExternalSecretData{data("k", ns+"/stays", "k", "")}}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	secrets := map[string]*corev1.Secret{}
	for _, name := range []string{"gone-default", "gone-retain", "owned", "orphan"} {
		es := waitForES(ctx, t, ns, name, "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
		if es.Spec.Target.DeletionPolicy != v1alpha1.DeletionPolicyRetain {
			t.Errorf("%s: deletionPolicy %q, want Retain (the default)", name, es.Spec.Target.DeletionPolicy)
		}
		secrets[name] = waitForSecret(ctx, t, ns, name, func(s *corev1.Secret) bool { return string(s.Data["k"]) == value })
	}

	// The remote data is gone: Retain keeps the Secret, untouched, and the
	// ExternalSecret says why it is not Ready.
	for _, name := range []string{"gone-default", "gone-retain"} {
		if err := vault.Client.KVv2("secret").DeleteMetadata(ctx, ns+"/"+name); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"gone-default", "gone-retain"} {
		msg := syncFailure(ctx, t, ns, name, "not found")
		wantAll(t, "status message of "+name, msg, `remote key "`+ns+"/"+name+`"`, "not found")
		// Several refreshes (1s) later, still there and unchanged.
		time.Sleep(3 * time.Second)
		got := &corev1.Secret{}
		if err := cluster.Client.Get(ctx, client.ObjectKeyFromObject(secrets[name]), got); err != nil {
			t.Errorf("%s: the Secret of a deleted remote secret with deletionPolicy Retain is gone: %v", name, err)
			continue
		}
		if got.ResourceVersion != secrets[name].ResourceVersion || string(got.Data["k"]) != value {
			t.Errorf("%s: the retained Secret was rewritten (resourceVersion %s → %s)", name, secrets[name].ResourceVersion, got.ResourceVersion)
		}
	}

	// Deleting the ExternalSecrets: Owner's Secret is garbage-collected,
	// Orphan's stays.
	for _, name := range []string{"owned", "orphan"} {
		if err := cluster.Client.Delete(ctx, &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "owned"}, &corev1.Secret{})
		return err != nil, client.IgnoreNotFound(err)
	})
	if err != nil {
		t.Errorf("the Secret of a deleted ExternalSecret with creationPolicy Owner was not garbage-collected: %v", err)
	}
	got := &corev1.Secret{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: "orphan"}, got); err != nil {
		t.Errorf("the Secret of a deleted ExternalSecret with creationPolicy Orphan is gone: %v", err)
	} else if string(got.Data["k"]) != value {
		t.Error("the orphaned Secret's data changed")
	}
}

// A ClusterSecretStore's namespaceSelector admits the namespaces whose
// labels match, and only them: an ExternalSecret elsewhere is denied at
// admission, a pod injecting one admitted earlier is denied, and its sync
// says why, once the namespace no longer matches.
func TestClusterStoreNamespaceSelector(t *testing.T) {
	ctx := testContext(t)
	team := map[string]string{"keyhook-e2e-team": "selector"}
	nsIn, err := cluster.Namespace(ctx, "sel-in", team)
	if err != nil {
		t.Fatal(err)
	}
	nsOut, err := cluster.Namespace(ctx, "sel-out", team)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{nsIn, nsOut} {
		if err := cluster.Client.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}); err != nil {
			t.Fatal(err)
		}
	}
	role := "sel-" + nsIn
	if err := vault.Role(ctx, role, nsIn+","+nsOut, "app", "vault", nsIn+"/*", nsOut+"/*"); err != nil {
		t.Fatal(err)
	}
	values := map[string]string{nsIn: secretValue(t, "in"), nsOut: secretValue(t, "out")}
	for ns, v := range values {
		if err := vault.Put(ctx, ns+"/db", map[string]any{"password": v}); err != nil {
			t.Fatal(err)
		}
	}
	store := "selector-" + nsIn
	css := &v1alpha1.ClusterSecretStore{
		ObjectMeta: metav1.ObjectMeta{Name: store},
		Spec: v1alpha1.SecretStoreSpec{
			Provider: v1alpha1.SecretStoreProvider{Vault: &v1alpha1.VaultProvider{Server: vault.Addr,
				Auth: v1alpha1.VaultAuth{Kubernetes: &v1alpha1.VaultKubernetesAuth{Role: role, ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "app"}}}}},
			Conditions: []v1alpha1.ClusterSecretStoreCondition{{NamespaceSelector: &metav1.LabelSelector{MatchLabels: team}}},
		},
	}
	if err := cluster.Client.Create(ctx, css); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cluster.Client.Delete(context.Background(), css) })
	viaStore := func(ns, name string) *v1alpha1.ExternalSecret {
		return externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
			SecretStoreRef:  v1alpha1.SecretStoreRef{Name: store, Kind: v1alpha1.SecretStoreKindCluster},
			RefreshInterval: &metav1.Duration{Duration: time.Second},
			Data:            []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		})
	}
	// Both namespaces match: both sync.
	for _, ns := range []string{nsIn, nsOut} {
		if err := cluster.Client.Create(ctx, viaStore(ns, "db")); err != nil {
			t.Fatalf("an ExternalSecret in matching namespace %s was denied: %v", ns, err)
		}
		waitForES(ctx, t, ns, "db", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
	}

	// nsOut stops matching.
	out := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsOut}}
	if err := updateLatest(ctx, out, func(n *corev1.Namespace) { delete(n.Labels, "keyhook-e2e-team") }); err != nil {
		t.Fatal(err)
	}
	denial := `ClusterSecretStore "` + store + `", whose spec.conditions do not admit namespace "` + nsOut + `"`

	// The sync says so (the last good Secret is kept).
	msg := syncFailure(ctx, t, nsOut, "db", "do not admit")
	wantAll(t, "status message", msg, denial)

	// A new ExternalSecret there is denied at admission.
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		err := cluster.Client.Create(ctx, viaStore(nsOut, "db2"))
		if err == nil {
			// The webhook's cache had not seen the label change yet.
			_ = cluster.Client.Delete(ctx, viaStore(nsOut, "db2"))
		}
		return err != nil, nil
	})
	if err != nil {
		t.Fatalf("an ExternalSecret in a namespace the selector no longer matches was admitted: %v", err)
	}
	if err := cluster.Client.Create(ctx, viaStore(nsOut, "db3")); err == nil {
		t.Error("an ExternalSecret in a namespace the selector does not match was admitted")
	} else {
		wantAll(t, "ExternalSecret denial", err.Error(), "denied the request", denial)
	}

	// A pod injecting the ExternalSecret admitted earlier is denied.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: nsOut, Name: "app", Annotations: map[string]string{"keyhook.dev/inject": "db"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "app", Containers: []corev1.Container{{Name: "app", Image: "example.com/app:1"}}},
	}
	if err := cluster.Client.Create(ctx, pod); err == nil {
		t.Error("a pod injecting through a store that does not admit its namespace was admitted")
	} else {
		wantAll(t, "pod denial", err.Error(), "denied the request", denial)
	}

	// The matching namespace still works: its pod is injected and its
	// agent reads the secret.
	_, root := runAgent(ctx, t, injectedPod(ctx, t, nsIn, "app", "db"))
	wantFiles(t, root, map[string]string{"db/password": values[nsIn]})
	waitForES(ctx, t, nsIn, "db", "Ready", readyIs(metav1.ConditionTrue, "SecretSynced"))
}
