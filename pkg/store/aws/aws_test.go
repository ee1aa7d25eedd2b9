package aws_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/fetch"
	"github.com/keyhook/keyhook/pkg/store/aws"
	"github.com/keyhook/keyhook/pkg/store/driver"
)

type fakeCreds struct{ asked []string }

func (f *fakeCreds) ServiceAccountToken(_ context.Context, ref *v1alpha1.ServiceAccountSelector, aud string) (string, error) {
	sa := "default"
	if ref != nil {
		sa = ref.Name
	}
	f.asked = append(f.asked, "token "+sa+" "+aud)
	return "jwt-of-" + sa, nil
}

func (f *fakeCreds) SecretValue(_ context.Context, ref v1alpha1.SecretKeySelector, what string) (string, error) {
	f.asked = append(f.asked, "secret "+ref.Name+"/"+ref.Key+" ("+what+")")
	return "value-of-" + ref.Key, nil
}

func source(a *v1alpha1.AWSProvider) *driver.Source {
	return &driver.Source{
		ExternalSecret: &v1alpha1.ExternalSecret{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "db"}},
		StoreKind:      v1alpha1.SecretStoreKindNamespaced, StoreName: "aws",
		Store: &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: a}},
	}
}

// The sync logs in as the ExternalSecret's namespace: a token of its service
// account for the default audience, or the keys of the store's Secret.
func TestSyncConfig(t *testing.T) {
	base := v1alpha1.AWSProvider{Service: v1alpha1.AWSParameterStore, Region: "eu-west-1", Role: "arn:aws:iam::123456789012:role/read"}
	sel := func(key string) v1alpha1.SecretKeySelector { return v1alpha1.SecretKeySelector{Name: "keys", Key: key} }
	for _, tc := range []struct {
		name      string
		auth      v1alpha1.AWSAuth
		want      aws.Config
		wantAsked []string
	}{
		{
			name: "web identity, default audience",
			auth: v1alpha1.AWSAuth{JWT: &v1alpha1.AWSJWTAuth{RoleARN: "arn:aws:iam::123456789012:role/web"}},
			want: aws.Config{Service: aws.ServiceParameterStore, Region: "eu-west-1", RoleARN: "arn:aws:iam::123456789012:role/read", SessionName: "keyhook-sync-team-a",
				WebIdentity: &aws.WebIdentity{RoleARN: "arn:aws:iam::123456789012:role/web", Token: "jwt-of-default"}},
			wantAsked: []string{"token default sts.amazonaws.com"},
		},
		{
			name: "static keys with a session token",
			auth: v1alpha1.AWSAuth{SecretRef: &v1alpha1.AWSAuthSecretRef{AccessKeyID: sel("id"), SecretAccessKey: sel("secret"), SessionToken: ptr(sel("session"))}},
			want: aws.Config{Service: aws.ServiceParameterStore, Region: "eu-west-1", RoleARN: "arn:aws:iam::123456789012:role/read", SessionName: "keyhook-sync-team-a",
				Static: &aws.StaticKeys{AccessKeyID: "value-of-id", SecretAccessKey: "value-of-secret", SessionToken: "value-of-session"}},
			wantAsked: []string{"secret keys/id (access key id)", "secret keys/secret (secret access key)", "secret keys/session (session token)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := base
			a.Auth = tc.auth
			creds := &fakeCreds{}
			got, err := aws.Provider{}.SyncConfig(context.Background(), source(&a), creds)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("config (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantAsked, creds.asked); diff != "" {
				t.Errorf("credentials asked for (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := (aws.Provider{}).SyncConfig(context.Background(), source(&base), &fakeCreds{}); !errors.Is(err, fetch.ErrInvalid) {
		t.Errorf("no auth: err = %v, want one wrapping fetch.ErrInvalid", err)
	}
}

func ptr[T any](v T) *T { return &v }

// The services awsagent names (without the CRD types) are the CRD's: the
// agent reads the plan's service by these names.
func TestServicesMatchTheCRD(t *testing.T) {
	if aws.ServiceSecretsManager != string(v1alpha1.AWSSecretsManager) || aws.ServiceParameterStore != string(v1alpha1.AWSParameterStore) {
		t.Errorf("services %q, %q; the CRD's are %q, %q", aws.ServiceSecretsManager, aws.ServiceParameterStore, v1alpha1.AWSSecretsManager, v1alpha1.AWSParameterStore)
	}
}
