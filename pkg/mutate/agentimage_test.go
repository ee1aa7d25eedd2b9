package mutate

import (
	"testing"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/resolve"
)

func withAWSStore() sourceOption {
	return func(s *resolve.Source) {
		s.StoreName = "aws"
		s.Store = &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{AWS: &v1alpha1.AWSProvider{
			Service: v1alpha1.AWSSecretsManager, Region: "eu-west-1",
			Auth: v1alpha1.AWSAuth{JWT: &v1alpha1.AWSJWTAuth{RoleARN: "arn:aws:iam::123456789012:role/app"}},
		}}}
	}
}

func withGCPStore() sourceOption {
	return func(s *resolve.Source) {
		s.StoreName = "gcp"
		s.Store = &v1alpha1.SecretStoreSpec{Provider: v1alpha1.SecretStoreProvider{GCPSM: &v1alpha1.GCPSMProvider{ProjectID: "shop"}}}
	}
}

// TestAgentImage checks which init-agent image a pod gets: the one-provider
// image when all its stores are of that provider and the webhook has one,
// else the all-provider image.
func TestAgentImage(t *testing.T) {
	cfg := testConfig
	cfg.ProviderImages = map[string]string{plan.ProviderVault: "keyhook/agent-vault:test", plan.ProviderAWS: "keyhook/agent-aws:test"}
	for _, tc := range []struct {
		name    string
		cfg     Config
		inject  string
		sources []*resolve.Source
		want    string
	}{
		{"vault stores get the vault image", cfg, "db,api", []*resolve.Source{newSource("db"), newSource("api")}, "keyhook/agent-vault:test"},
		{"aws stores get the aws image", cfg, "db", []*resolve.Source{newSource("db", withAWSStore())}, "keyhook/agent-aws:test"},
		{"a provider without an image of its own gets the all-provider image", cfg, "db", []*resolve.Source{newSource("db", withGCPStore())}, "keyhook/agent:test"},
		{"stores of two providers get the all-provider image", cfg, "db,api", []*resolve.Source{newSource("db"), newSource("api", withAWSStore())}, "keyhook/agent:test"},
		{"no one-provider images: the all-provider image", testConfig, "db", []*resolve.Source{newSource("db")}, "keyhook/agent:test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := newPod()
			pod.Annotations["keyhook.dev/inject"] = tc.inject
			req, err := Parse(pod.Namespace, pod.Annotations)
			if err != nil {
				t.Fatal(err)
			}
			out, err := Apply(pod, tc.cfg, req, tc.sources)
			if err != nil {
				t.Fatal(err)
			}
			if got := out.Spec.InitContainers[0]; got.Name != AgentContainerName || got.Image != tc.want {
				t.Errorf("init container %s has image %q, want %s with %q", got.Name, got.Image, AgentContainerName, tc.want)
			}
		})
	}
}
