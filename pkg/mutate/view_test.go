package mutate

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	sigsjson "sigs.k8s.io/json"
)

// TestDecodePod checks DecodePod against the decoder the API machinery uses
// (sigs.k8s.io/json into a whole corev1.Pod): for documents with nulls,
// zeros, members keyhook skips and member names in another case, the view
// is that of the whole pod; and documents that a partial decoder could read
// as another pod (a duplicate name anywhere) are refused.
func TestDecodePod(t *testing.T) {
	for name, raw := range map[string]string{
		"nulls": `{"metadata":{"labels":null,"annotations":null},"spec":{"securityContext":null,"volumes":null,` +
			`"initContainers":null,"containers":[{"name":"a","securityContext":null,"volumeMounts":null}]}}`,
		"users null, zero and set": `{"spec":{"securityContext":{"runAsUser":null,"fsGroup":0},` +
			`"containers":[{"name":"a","securityContext":{"runAsUser":0}},{"name":"b","securityContext":{"runAsUser":1000,"privileged":true}}]}}`,
		"members keyhook skips": `{"apiVersion":"v1","kind":"Pod","status":{"phase":"Pending"},"metadata":{"name":"p","uid":"u","ownerReferences":[{"kind":"ReplicaSet"}]},` +
			`"spec":{"nodeName":"n","containers":[{"name":"a","env":[{"name":"X","value":"1"}],"volumeMounts":[{"name":"v","mountPath":"/v","readOnly":true}]}],"volumes":[{"name":"v","emptyDir":{}}]}}`,
		"names with escapes": `{"metadata":{"l\u0061bels":{"policy":"enforce"},"annotations":{"keyhook.dev\/inject":"db"}},` +
			`"spec":{"containers":[{"n\u0061me":"a","volumeMounts":[{"name":"v","mountP\u0061th":"/v"}]}]}}`,
		"names in another case": `{"Metadata":{"labels":{"a":"b"}},"metadata":{"Labels":{"x":"y"},"labels":{"policy":"enforce"},"Annotations":{"keyhook.dev/inject":"false"}},` +
			`"spec":{"NodeName":"evil","n\u006fdeName":"node-1","Containers":[{"name":"x"}],"containers":[{"Name":"y","name":"a","VolumeMounts":[{"name":"v"}]}],"SecurityContext":{"fsGroup":1}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			pod := &corev1.Pod{}
			if err := sigsjson.UnmarshalCaseSensitivePreserveInts([]byte(raw), pod); err != nil {
				t.Fatal(err)
			}
			view, err := DecodePod([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(ViewOf(pod), view); diff != "" {
				t.Errorf("DecodePod differs from the whole pod's view (-whole +DecodePod):\n%s", diff)
			}
		})
	}
	for name, raw := range map[string]string{
		"a duplicate label":              `{"metadata":{"labels":{"policy":"enforce","policy":"none"}}}`,
		"a duplicate annotations member": `{"metadata":{"annotations":{"keyhook.dev/inject":"db"},"annotations":{}}}`,
		"a duplicate in a skipped part":  `{"spec":{"containers":[{"name":"a","resources":{"limits":{"cpu":"1","cpu":"2"}}}]}}`,
		"a duplicate runAsUser":          `{"spec":{"securityContext":{"runAsUser":0,"runAsUser":1000}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			if v, err := DecodePod([]byte(raw)); err == nil {
				t.Fatalf("decoded %+v; want an error", v)
			}
		})
	}
}
