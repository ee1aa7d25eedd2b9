package admission_test

import (
	"context"
	"net/http"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// TestDecidesOnWhatTheAPIServerSent sends pods written to make a partial or
// lax decoder see other labels or annotations than the API server stores:
// the ClusterInjectionPolicy enforce-db enforces injection for pods labelled
// policy=enforce. A duplicate member name (which the API server never sends:
// it encodes the pod itself) is refused, so the API server denies the pod
// where injection is enforced (failurePolicy Fail) instead of keyhook
// deciding on one of two readings; a member name in another case
// ("Labels") is not the member, for keyhook as for the API server's decoder,
// so the pod is injected exactly as when keyhook decoded the whole pod.
func TestDecidesOnWhatTheAPIServerSent(t *testing.T) {
	h := fuzzInjector(t)
	full := fuzzInjector(t)
	keyhookadmission.FullDecode(full)
	const containers = `"spec":{"containers":[{"name":"web","image":"web:1"}]}`
	pod := func(metadata string) string {
		return `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"team-a",` + metadata + `},` + containers + `}`
	}
	for name, tc := range map[string]struct {
		raw     string
		refused bool
	}{
		"the enforcing label, then no labels":        {raw: pod(`"labels":{"policy":"enforce"},"labels":{}`), refused: true},
		"the enforcing label, then another value":    {raw: pod(`"labels":{"policy":"enforce","policy":"none"}`), refused: true},
		"the enforcing label, then other metadata":   {raw: `{"metadata":{"namespace":"team-a","labels":{"policy":"enforce"}},"metadata":{"name":"web"},` + containers + `}`, refused: true},
		"an opt-out after the inject annotation":     {raw: pod(`"annotations":{"keyhook.dev/inject":"db","keyhook.dev/inject":"false"}`), refused: true},
		"a duplicate in a part keyhook skips":        {raw: `{"metadata":{"namespace":"team-a","labels":{"policy":"enforce"}},"spec":{"containers":[{"name":"web","image":"web:1","env":[{"name":"A","name":"B"}]}]}}`, refused: true},
		"invalid UTF-8 in a label":                   {raw: pod(`"labels":{"policy":"enforce","x":"` + "\xff" + `"}`), refused: true},
		"Labels opting out beside labels":            {raw: pod(`"labels":{"policy":"enforce"},"Labels":{"policy":"none"}`)},
		"Annotations opting out beside labels":       {raw: pod(`"labels":{"policy":"enforce"},"Annotations":{"keyhook.dev/inject":"false"}`)},
		"Metadata without the label before metadata": {raw: `{"Metadata":{"name":"web","namespace":"team-a"},"metadata":{"name":"web","namespace":"team-a","labels":{"policy":"enforce"}},` + containers + `}`},
		"an opt-out annotation under another case":   {raw: pod(`"labels":{"policy":"enforce"},"annotations":{"Keyhook.dev/inject":"false"}`)},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := log.IntoContext(context.Background(), quiet)
			req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				UID: "decode", Namespace: "team-a", Operation: admissionv1.Create,
				Kind:   metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
				Object: runtime.RawExtension{Raw: []byte(tc.raw)},
			}}
			resp := h.Handle(ctx, req)
			if tc.refused {
				if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest || len(resp.Patches) > 0 {
					t.Fatalf("answered %v %+v with %d patch operations; want the pod refused as unreadable (400)", resp.Allowed, resp.Result, len(resp.Patches))
				}
				return
			}
			if !resp.Allowed || len(resp.Patches) == 0 {
				t.Fatalf("answered %v %+v with %d patch operations; want the enforced injection", resp.Allowed, resp.Result, len(resp.Patches))
			}
			if p := patched(t, req.Object.Raw, resp.Patches); len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != mutate.AgentContainerName {
				t.Fatalf("the patch does not add the agent: %+v", resp.Patches)
			}
			sameAsFullDecode(t, h, full, req)
		})
	}
}
