package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch/aws/awstest"
	"github.com/keyhook/keyhook/tests/framework"
)

// tokenReviewer trusts a web identity token as STS does for an EKS OIDC
// provider: the real test apiserver must accept it for the sts.amazonaws.com
// audience, and the subject is its service account.
func tokenReviewer(ctx context.Context, token, _ string) (string, error) {
	tr, err := cluster.Clientset.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{"sts.amazonaws.com"}},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	if !tr.Status.Authenticated {
		return "", errors.New("token rejected by the apiserver: " + tr.Status.Error)
	}
	return tr.Status.User.Username, nil
}

// irsaRole adds a role to srv that only the service account "app" of ns
// may assume, with its projected token (reviewed by the real API server),
// as an IRSA trust policy says.
func irsaRole(srv *awstest.Server, name, ns string) string {
	subject := "system:serviceaccount:" + ns + ":app"
	return srv.AddRole(name, awstest.Trust{WebIdentity: func(ctx context.Context, token, roleARN string) (string, error) {
		sub, err := tokenReviewer(ctx, token, roleARN)
		if err != nil {
			return "", err
		}
		if sub != subject {
			return "", awstest.ErrUntrusted
		}
		return sub, nil
	}})
}

// createAWSStores creates the SecretStores "sm" (Secrets Manager) and
// "ssm" (Parameter Store) of ns on srv, logging in as role with the token
// of the service account "app".
func createAWSStores(ctx context.Context, t *testing.T, srv *awstest.Server, ns, role string) {
	t.Helper()
	for name, service := range map[string]v1alpha1.AWSService{"sm": v1alpha1.AWSSecretsManager, "ssm": v1alpha1.AWSParameterStore} {
		if err := cluster.Client.Create(ctx, &v1alpha1.SecretStore{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{
				Service: service, Region: srv.Region(), Endpoint: srv.URL(), STSEndpoint: srv.URL(), CABundle: srv.CABundle(),
				Auth: v1alpha1.AWSAuth{JWT: &v1alpha1.AWSJWTAuth{RoleARN: role, ServiceAccountRef: &v1alpha1.ServiceAccountSelector{Name: "app"}}},
			}}},
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAWSProviders injects and syncs from Secrets Manager and Parameter
// Store, authenticating as IRSA does: the pod's (or, for the sync, its
// namespace's service account's) projected token, exchanged at STS.
func TestAWSProviders(t *testing.T) {
	ctx := testContext(t)
	ns := tenant(ctx, t, "aws")
	srv := awstest.New(awstest.Options{})
	t.Cleanup(srv.Close)
	role := irsaRole(srv, ns+"-reader", ns)
	srv.Allow(role, ns+"/", "secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret")
	srv.Allow(role, "/"+ns+"/", "ssm:GetParameter", "ssm:DescribeParameters")
	dbPass, apiKey := secretValue(t, "db"), secretValue(t, "api")
	srv.PutSecretString(ns+"/db", `{"user":"app","password":"`+dbPass+`"}`)
	srv.PutParameter("/"+ns+"/api-key", awstest.SecureString, apiKey)

	createAWSStores(ctx, t, srv, ns, role)
	for _, es := range []*v1alpha1.ExternalSecret{
		externalSecret(ns, "db", v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "sm", Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("password", ns+"/db", "password", "")},
		}),
		externalSecret(ns, "api", v1alpha1.ExternalSecretSpec{
			SecretStoreRef: v1alpha1.SecretStoreRef{Name: "ssm", Kind: v1alpha1.SecretStoreKindNamespaced},
			Data:           []v1alpha1.ExternalSecretData{data("key", "/"+ns+"/api-key", "", "")},
		}),
	} {
		if err := cluster.Client.Create(ctx, es); err != nil {
			t.Fatal(err)
		}
	}

	// The sync: both Secrets match the remote values.
	waitForSecret(ctx, t, ns, "db", func(s *corev1.Secret) bool { return string(s.Data["password"]) == dbPass })
	waitForSecret(ctx, t, ns, "api", func(s *corev1.Secret) bool { return string(s.Data["key"]) == apiKey })

	// Injection: the agent, as the pod's own service account, writes the files.
	pod := plainPod(ns, "web", map[string]string{"keyhook.dev/inject": "db,api"}, nil)
	pod.Spec.ServiceAccountName = "app"
	if err := cluster.Client.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if !hasAgent(pod) {
		t.Fatalf("pod not injected")
	}
	// Its stores are all AWS ones: the agent built with AWS alone
	// (--agent-image-aws), which runAgent runs.
	if img := pod.Spec.InitContainers[0].Image; img != agentImageAWS {
		t.Errorf("agent image %q, want the AWS-only %q", img, agentImageAWS)
	}
	before := srv.Calls(awstest.OpAssumeRoleWithWebIdentity)
	output, root := runAgent(ctx, t, pod)
	wantFiles(t, root, map[string]string{"db/password": dbPass, "api/key": apiKey})
	// One STS exchange per store the pod uses, with the pod's own token.
	if n := srv.Calls(awstest.OpAssumeRoleWithWebIdentity) - before; n != 2 {
		t.Errorf("agent called AssumeRoleWithWebIdentity %d times, want 2 (one per store)", n)
	}
	for _, c := range srv.CallLog() {
		if c.Principal != "" && !strings.Contains(c.Principal, ns+"-reader") {
			t.Errorf("a call ran as %q, not the namespace's role", c.Principal)
		}
	}
	assertNoValues(ctx, t, ns, dbPass, apiKey)
	if strings.Contains(output, dbPass) || strings.Contains(output, apiKey) {
		t.Errorf("agent output contains a secret value")
	}

	// A pod of another service account is refused by STS (the role trusts
	// only "app"), and the agent says so without a value.
	other := plainPod(ns, "intruder", map[string]string{"keyhook.dev/inject": "db"}, nil)
	if err := cluster.Client.Create(ctx, other); err != nil {
		t.Fatal(err)
	}
	run, err := framework.RunAgent(ctx, cluster, agentBin, other, t.TempDir(), "--deadline=5s")
	if err != nil {
		t.Fatal(err)
	}
	if run.Err == nil {
		t.Fatalf("an untrusted service account read the secret")
	}
	if !strings.Contains(run.Output, "ExternalSecret db") || !strings.Contains(strings.ToLower(run.Output), "denied") {
		t.Errorf("agent failure does not name the ExternalSecret and the denial:\n%s", run.Output)
	}
	_ = cluster.Client.Delete(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: other.Name}}, client.GracePeriodSeconds(0))
}
