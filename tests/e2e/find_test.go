package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch/aws/awstest"
	"github.com/keyhook/keyhook/pkg/fetch/gcpsm/gcpsmtest"
)

// findES is an ExternalSecret of store made of one dataFrom.find.
func findES(ns, name, store string, find *v1alpha1.ExternalSecretFind) *v1alpha1.ExternalSecret {
	return externalSecret(ns, name, v1alpha1.ExternalSecretSpec{
		SecretStoreRef: v1alpha1.SecretStoreRef{Name: store, Kind: v1alpha1.SecretStoreKindNamespaced},
		DataFrom:       []v1alpha1.ExternalSecretDataFrom{{Find: find}},
	})
}

// findBothPaths checks that the sync's Secret and an injected pod's files
// hold exactly want (key → value) for the ExternalSecret name.
func findBothPaths(t *testing.T, ns, name string, want map[string]string) {
	t.Helper()
	ctx := testContext(t)
	s := waitForSecret(ctx, t, ns, name, func(s *corev1.Secret) bool { return len(s.Data) > 0 })
	got := map[string]string{}
	for k, v := range s.Data {
		got[k] = string(v)
	}
	if !maps.Equal(got, want) {
		t.Errorf("sync: Secret %s has keys %v, want %v (or values differ)", name, slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
	pod := plainPod(ns, "find", map[string]string{"keyhook.dev/inject": name}, nil)
	pod.Spec.ServiceAccountName = "app"
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(pod) {
		t.Fatal("pod not injected")
	}
	output, root := runAgent(ctx, t, pod)
	files := map[string]string{}
	for k, v := range want {
		files[name+"/"+k] = v
	}
	wantFiles(t, root, files)
	entries, err := readDirNames(root, name)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(entries, slices.Sorted(maps.Keys(want))) {
		t.Errorf("agent: wrote %v, want %v", entries, slices.Sorted(maps.Keys(want)))
	}
	for _, v := range want {
		if strings.Contains(output, v) {
			t.Error("the agent printed a value")
		}
	}
}

// TestFindVault: dataFrom.find over a Vault KV v2 mount, by path prefix and
// name, in the sync (through its read cache, which used to drop the
// capability) and in an injected pod; admission refuses what a store cannot
// find by.
func TestFindVault(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "find")
	// find LISTs the mount's metadata: the role needs "list" there.
	if err := vault.Client.Sys().PutPolicyWithContext(ctx, ns, fmt.Sprintf(
		"path %q { capabilities = [\"read\"] }\npath %q { capabilities = [\"read\", \"list\"] }\n",
		"secret/data/"+ns+"/*", "secret/metadata/"+ns+"/*")); err != nil {
		t.Fatal(err)
	}
	values := map[string]string{}
	for _, p := range []string{"app/db", "app/api/token", "app/old", "other"} {
		values[p] = secretValue(t, strings.ReplaceAll(p, "/", "-"))
		if err := vault.Put(ctx, ns+"/"+p, map[string]any{"value": values[p]}); err != nil {
			t.Fatal(err)
		}
	}
	field := func(p string) string {
		b, _ := json.Marshal(map[string]string{"value": values[p]})
		return string(b)
	}
	if err := cluster.Client.Create(ctx, findES(ns, "found", "vault", &v1alpha1.ExternalSecretFind{
		Path: ns + "/app/", Name: &v1alpha1.FindName{RegExp: "(db|token)$"},
	})); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, findES(ns, "all", "vault", &v1alpha1.ExternalSecretFind{Path: ns + "/app/"})); err != nil {
		t.Fatal(err)
	}
	findBothPaths(t, ns, "found", map[string]string{"db": field("app/db"), "api_token": field("app/api/token")})
	findBothPaths(t, ns, "all", map[string]string{"db": field("app/db"), "api_token": field("app/api/token"), "old": field("app/old")})

	// Admission: a regular expression that does not compile, and a name on
	// a store whose provider finds by prefix only.
	err := cluster.Client.Create(ctx, findES(ns, "bad-regexp", "vault", &v1alpha1.ExternalSecretFind{Path: ns + "/", Name: &v1alpha1.FindName{RegExp: "(["}}), client.DryRunAll)
	wantDenied(t, err, "spec.dataFrom[0].find.name.regexp", "not a regular expression")
	if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "aws"},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{
			Service: v1alpha1.AWSSecretsManager, Region: "eu-west-1",
			// Nothing listens there: whatever tries it fails at once.
			Endpoint: "https://127.0.0.1:1", STSEndpoint: "https://127.0.0.1:1",
			Auth: v1alpha1.AWSAuth{JWT: &v1alpha1.AWSJWTAuth{RoleARN: "arn:aws:iam::123456789012:role/shop"}},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	err = cluster.Client.Create(ctx, findES(ns, "aws-name", "aws", &v1alpha1.ExternalSecretFind{Path: "shop/", Name: &v1alpha1.FindName{RegExp: "db"}}), client.DryRunAll)
	wantDenied(t, err, "spec.dataFrom[0].find.name", "path prefix only")
	if err := cluster.Client.Create(ctx, findES(ns, "aws-prefix", "aws", &v1alpha1.ExternalSecretFind{Path: "shop/"}), client.DryRunAll); err != nil {
		t.Errorf("find by prefix on an AWS store was refused: %v", err)
	}
	assertNoValues(ctx, t, ns, slices.Collect(maps.Values(values))...)
}

// TestFindGoogle: dataFrom.find over Google Secret Manager (the real client
// against the in-process fake), by name prefix, name and labels, in both
// paths.
func TestFindGoogle(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "findgcp")
	srv := gcpsmtest.New(gcpsmtest.Options{ProjectID: "shop-prod"})
	t.Cleanup(srv.Close)
	email := "finder@" + ns + ".iam.gserviceaccount.com"
	srv.Allow(email, "*", gcpsmtest.PermAccess, gcpsmtest.PermList)
	values := map[string]string{}
	for id, labels := range map[string]map[string]string{
		"shop-db":    {"env": "prod"},
		"shop-api":   {"env": "prod"},
		"shop-debug": {"env": "dev"},
		"billing-db": {"env": "prod"},
	} {
		values[id] = secretValue(t, id)
		srv.Put(id, []byte(values[id]))
		srv.SetLabels(id, labels)
	}
	if err := cluster.Client.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gcp-sa"},
		Data:       map[string][]byte{"key.json": srv.ServiceAccountKey(email)},
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "gcp"},
		Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{
			ProjectID: srv.ProjectID(), Endpoint: srv.Addr(), CABundle: srv.CABundle(),
			Auth: v1alpha1.GCPSMAuth{SecretRef: &v1alpha1.GCPSMAuthSecretRef{SecretAccessKey: v1alpha1.SecretKeySelector{Name: "gcp-sa", Key: "key.json"}}},
		}}},
	}); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, findES(ns, "prod", "gcp", &v1alpha1.ExternalSecretFind{
		Path: "shop-", Name: &v1alpha1.FindName{RegExp: "-(db|api|debug)$"}, Tags: map[string]string{"env": "prod"},
	})); err != nil {
		t.Fatal(err)
	}
	findBothPaths(t, ns, "prod", map[string]string{"db": values["shop-db"], "api": values["shop-api"]})
	if srv.Count(gcpsmtest.MethodListSecrets) == 0 {
		t.Error("no ListSecrets reached the server")
	}
	assertNoValues(ctx, t, ns, slices.Collect(maps.Values(values))...)
}

// readDirNames lists the files the agent wrote for the ExternalSecret name.
func readDirNames(root, name string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(root, "var/run/secrets/keyhook", name))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// TestFindAWS: dataFrom.find over Secrets Manager (BatchGetSecretValue by
// name prefix) and Parameter Store (GetParametersByPath, recursive), the
// real SDK clients against the in-process AWS server, authenticating as
// IRSA does; in the sync and in an injected pod.
func TestFindAWS(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "findaws")
	srv := awstest.New(awstest.Options{})
	t.Cleanup(srv.Close)
	role := irsaRole(srv, ns+"-finder", ns)
	// BatchGetSecretValue and ListSecrets are not scoped to a resource in
	// IAM; each secret read is.
	srv.Allow(role, "", "secretsmanager:BatchGetSecretValue", "secretsmanager:ListSecrets")
	srv.Allow(role, ns+"/", "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")
	srv.Allow(role, "/"+ns+"/", "ssm:GetParametersByPath", "ssm:GetParameter", "ssm:DescribeParameters")
	values := map[string]string{}
	for _, name := range []string{ns + "/app/db", ns + "/app/api/token", ns + "/other", "elsewhere/app/db"} {
		values[name] = secretValue(t, strings.ReplaceAll(name, "/", "-"))
		srv.PutSecretString(name, values[name])
	}
	for _, name := range []string{"/" + ns + "/app/db", "/" + ns + "/app/api/key", "/" + ns + "/other"} {
		values[name] = secretValue(t, strings.ReplaceAll(name, "/", "-"))
		srv.PutParameter(name, awstest.SecureString, values[name])
	}
	createAWSStores(ctx, t, srv, ns, role)
	if err := cluster.Client.Create(ctx, findES(ns, "sm-found", "sm", &v1alpha1.ExternalSecretFind{Path: ns + "/app/"})); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, findES(ns, "ssm-found", "ssm", &v1alpha1.ExternalSecretFind{Path: "/" + ns + "/app"})); err != nil {
		t.Fatal(err)
	}
	batch, byPath := srv.Calls(awstest.OpBatchGetSecretValue), srv.Calls(awstest.OpGetParametersByPath)
	findBothPaths(t, ns, "sm-found", map[string]string{"db": values[ns+"/app/db"], "api_token": values[ns+"/app/api/token"]})
	findBothPaths(t, ns, "ssm-found", map[string]string{"db": values["/"+ns+"/app/db"], "api_key": values["/"+ns+"/app/api/key"]})
	if srv.Calls(awstest.OpBatchGetSecretValue) == batch || srv.Calls(awstest.OpGetParametersByPath) == byPath {
		t.Error("find did not reach the AWS server with BatchGetSecretValue and GetParametersByPath")
	}
	for _, c := range srv.CallLog() {
		if c.Principal != "" && !strings.Contains(c.Principal, ns+"-finder") {
			t.Errorf("a call ran as %q, not the namespace's role", c.Principal)
		}
	}
	assertNoValues(ctx, t, ns, slices.Collect(maps.Values(values))...)
}
