package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// sdks are the module path prefixes of each provider's SDK.
var sdks = map[string][]string{
	"vault": {"github.com/hashicorp/vault/api"},
	"aws":   {"github.com/aws/aws-sdk-go-v2"},
	"gcpsm": {"cloud.google.com/go", "google.golang.org/grpc"},
}

// kubernetes are the module path prefixes of Kubernetes' libraries: the
// agent reads its plan from its environment and talks to the provider only,
// so none of them belongs in it (they would double a one-provider agent's
// size and start-up work).
var kubernetes = []string{"k8s.io/", "sigs.k8s.io/"}

// TestProviderBuilds checks what each build of the agent links: the build
// tag of one provider links that provider's SDK and no other's; all, and no
// tag, link every one; no build links a Kubernetes library (client-go,
// apimachinery, controller-runtime, the CRD types).
func TestProviderBuilds(t *testing.T) {
	for _, tags := range []string{"vault", "aws", "gcpsm", "all", ""} {
		t.Run("tags="+tags, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-tags", tags, "-deps", ".").Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			deps := strings.Fields(string(out))
			for _, d := range deps {
				if slices.ContainsFunc(kubernetes, func(prefix string) bool { return strings.HasPrefix(d, prefix) }) {
					t.Errorf("links %s: the agent must link no Kubernetes library", d)
				}
			}
			for provider, prefixes := range sdks {
				want := tags == provider || tags == "all" || tags == ""
				for _, prefix := range prefixes {
					got := slices.ContainsFunc(deps, func(d string) bool { return strings.HasPrefix(d, prefix) })
					if got != want {
						t.Errorf("links %s: %v, want %v", prefix, got, want)
					}
				}
			}
		})
	}
}
