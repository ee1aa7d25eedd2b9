package loadgen

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// respond encodes resp as the answer to the request uid, as the webhook
// server does.
func respond(t *testing.T, uid string, resp admission.Response) []byte {
	t.Helper()
	resp.UID = types.UID(uid)
	if len(resp.Patches) > 0 {
		// What webhook.Admission does with the operations of a handler.
		patch, err := json.Marshal(resp.Patches)
		if err != nil {
			t.Fatal(err)
		}
		resp.Patch = patch
		resp.PatchType = ptr.To(admissionv1.PatchTypeJSONPatch)
	}
	ar := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// injectedResponse is the response the real mutation gives to r's pod.
func injectedResponse(t *testing.T, r *Review, patchPod func(*corev1.Pod)) admission.Response {
	t.Helper()
	pod := r.Pod
	req, err := mutate.Parse(pod.Namespace, pod.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	store := fixture.Store(pod.Namespace, "https://vault:8200", pod.Namespace)
	var sources []*resolve.Source
	for _, es := range fixture.ExternalSecrets(pod.Namespace) {
		sources = append(sources, &resolve.Source{ExternalSecret: es, StoreKind: v1alpha1.SecretStoreKindNamespaced, StoreName: store.Name, Store: &store.Spec})
	}
	out, err := mutate.Apply(pod, mutate.Config{AgentImage: "agent:test"}, req, sources)
	if err != nil {
		t.Fatal(err)
	}
	if patchPod != nil {
		patchPod(out)
	}
	raw, err := json.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return admission.PatchResponseFromRaw(r.podRaw, raw)
}

func TestChecker(t *testing.T) {
	r, err := NewReview(fixture.Pod("shop"))
	if err != nil {
		t.Fatal(err)
	}
	const uid = "6b0c3c3e-1f0a-4f38-9d0e-5a1c2b3d4e5f"
	for _, tc := range []struct {
		name    string
		body    []byte
		uid     string
		wantErr string
	}{
		{name: "injected", body: respond(t, uid, injectedResponse(t, r, nil)), uid: uid},
		{name: "answers another request", body: respond(t, uid, injectedResponse(t, r, nil)), uid: "another", wantErr: "answers another request"},
		{name: "denied", body: respond(t, uid, admission.Denied("no")), uid: uid, wantErr: "not allowed: no"},
		{name: "allowed without a patch", body: respond(t, uid, admission.Allowed("")), uid: uid, wantErr: "no JSONPatch"},
		{name: "agent not first", body: respond(t, uid, injectedResponse(t, r, func(p *corev1.Pod) {
			p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: "other"})
			p.Spec.InitContainers[0], p.Spec.InitContainers[1] = p.Spec.InitContainers[1], p.Spec.InitContainers[0]
		})), uid: uid, wantErr: "init containers"},
		{name: "container without the mount", body: respond(t, uid, injectedResponse(t, r, func(p *corev1.Pod) {
			c := &p.Spec.Containers[1]
			c.VolumeMounts = c.VolumeMounts[:len(c.VolumeMounts)-1]
		})), uid: uid, wantErr: "lacks a read-only mount"},
		{name: "not JSON", body: []byte("<html>"), uid: uid, wantErr: "decoding"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := NewChecker(r, fixture.InjectedNames).Check(tc.body, tc.uid)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("valid response rejected: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestRun drives a TLS server that answers as keyhook would, and one that
// denies, and checks what Run counts.
func TestRun(t *testing.T) {
	r, err := NewReview(fixture.Pod("shop"))
	if err != nil {
		t.Fatal(err)
	}
	good := injectedResponse(t, r, nil)
	for _, tc := range []struct {
		name       string
		resp       admission.Response
		wantErrors bool
	}{
		{name: "injects", resp: good},
		{name: "denies", resp: admission.Denied("no"), wantErrors: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				var ar admissionv1.AdmissionReview
				b, _ := io.ReadAll(req.Body)
				if err := json.Unmarshal(b, &ar); err != nil || ar.Request == nil {
					http.Error(w, "bad review", http.StatusBadRequest)
					return
				}
				_, _ = w.Write(respond(t, string(ar.Request.UID), tc.resp))
			}))
			defer srv.Close()
			ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
			res, err := Run(context.Background(), Config{
				URL: srv.URL, CAPEM: ca, Review: r, WantSecrets: fixture.InjectedNames,
				Concurrency: 2, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond,
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.Requests == 0 {
				t.Fatal("no request measured")
			}
			if gotErrors := res.Errors > 0; gotErrors != tc.wantErrors {
				t.Fatalf("errors: %d of %d (first: %v), want errors %v", res.Errors, res.Requests, res.FirstError, tc.wantErrors)
			}
			if !tc.wantErrors && len(res.Latencies) != res.Requests {
				t.Fatalf("%d latencies for %d requests", len(res.Latencies), res.Requests)
			}
		})
	}
}
