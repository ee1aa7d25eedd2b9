package mutate

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/keyhook/keyhook/pkg/plan"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// FuzzParse checks that no annotation value makes Parse panic, and that what
// it accepts is always a list of valid names in the pod's own namespace.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"db", "db,api", " a , b ", "team-b/db", "team-a/db", "", ",", "false", "A_B", "a/b/c"} {
		f.Add(s, "/etc/secrets")
	}
	f.Fuzz(func(t *testing.T, inject, mountPath string) {
		req, err := Parse("team-a", map[string]string{"keyhook.dev/inject": inject, "keyhook.dev/mount-path": mountPath})
		if err != nil || req == nil {
			return
		}
		if len(req.Names) == 0 {
			t.Fatalf("accepted %q with no names", inject)
		}
		for _, n := range req.Names {
			if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
				t.Fatalf("accepted invalid name %q from %q", n, inject)
			}
		}
		// Whatever it accepts, Apply turns into a valid, idempotent pod.
		srcs := make([]*resolve.Source, 0, len(req.Names))
		for _, n := range req.Names {
			srcs = append(srcs, newSource(n))
		}
		got, err := Apply(newPod(), testConfig, req, srcs)
		if err != nil {
			return
		}
		if _, err := plan.Decode(got.Spec.InitContainers[0].Env[0].Value); err != nil {
			t.Fatalf("Apply wrote a plan the agent rejects: %v", err)
		}
	})
}
