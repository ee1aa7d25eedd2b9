package e2e

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
)

// TestGoogleSecretManager syncs and injects from Google Secret Manager (the
// real SDK against an in-process server that checks OAuth tokens minted from
// a service-account key, as Google does), and shows that the sync never reads
// as keyhook's own Google identity for a namespace.
func TestGoogleSecretManager(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "gcp")
	srv := gcpsmtest.New(gcpsmtest.Options{ProjectID: "shop-prod"})
	t.Cleanup(srv.Close)
	email := "reader@" + ns + ".iam.gserviceaccount.com"
	srv.Allow(email, ns+"-db")
	password := secretValue(t, "gcp")
	srv.Put(ns+"-db", []byte(`{"user":"app","password":"`+password+`"}`))

	if err := cluster.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gcp-sa"},
		Data:       map[string][]byte{"key.json": srv.ServiceAccountKey(email)},
	}); err != nil {
		t.Fatal(err)
	}
	for name, auth := range map[string]v1alpha1.GCPSMAuth{
		"gcp": {SecretRef: &v1alpha1.GCPSMAuthSecretRef{SecretAccessKey: v1alpha1.SecretKeySelector{Name: "gcp-sa", Key: "key.json"}}},
		// No key: injected pods would use their workload identity; the
		// sync must refuse rather than read as keyhook.
		"gcp-adc": {},
	} {
		if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{
				ProjectID: srv.ProjectID(), Endpoint: srv.Addr(), CABundle: srv.CABundle(), Auth: auth,
			}}},
		}); err != nil {
			t.Fatal(err)
		}
		if err := cluster.Client.Create(ctx, externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: name, Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("password", ns+"-db", "password", "latest")},
		})); err != nil {
			t.Fatal(err)
		}
	}

	waitForSecret(ctx, t, ns, "gcp", func(s *corev1.Secret) bool { return string(s.Data["password"]) == password })
	es := waitForES(ctx, t, ns, "gcp-adc", "refused for want of a key", readyIs(metav1.ConditionFalse, "SecretSyncedError"))
	for _, c := range es.Status.Conditions {
		if c.Type == "Ready" && !strings.Contains(c.Message, "auth.secretRef") {
			t.Errorf("the refusal does not say how to fix it: %q", c.Message)
		}
	}
	if n := srv.Count(gcpsmtest.MethodAccessSecretVersion); n == 0 {
		t.Fatal("no AccessSecretVersion call reached the server")
	}
	for _, c := range srv.Calls() {
		if c.Principal != "" && c.Principal != email {
			t.Errorf("a call ran as %q, not the store's service account", c.Principal)
		}
	}

	// Injection: the agent reads with the key from the pod's namespace,
	// passed by secretKeyRef, never by value.
	pod := plainPod(ns, "web", map[string]string{"keyhook.dev/inject": "gcp"}, nil)
	pod.Spec.ServiceAccountName = "app"
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(pod) {
		t.Fatal("pod not injected")
	}
	// Its store is a Google one: the agent built with Google Secret Manager
	// alone (--agent-image-gcpsm), which runAgent runs.
	if img := pod.Spec.InitContainers[0].Image; img != agentImageGCPSM {
		t.Errorf("agent image %q, want the Google-only %q", img, agentImageGCPSM)
	}
	for _, c := range pod.Spec.InitContainers {
		for _, e := range c.Env {
			if strings.Contains(e.Value, "PRIVATE KEY") {
				t.Errorf("init container env %s holds the service-account key", e.Name)
			}
		}
	}
	output, root := runAgent(ctx, t, pod)
	wantFiles(t, root, map[string]string{"gcp/password": password})
	assertNoValues(ctx, t, ns, password, "PRIVATE KEY")
	if strings.Contains(output, password) {
		t.Error("agent output contains the secret value")
	}
}
