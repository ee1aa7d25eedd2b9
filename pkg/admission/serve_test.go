package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// answer is an AdmissionReview response as the API server reads it: the
// patch decoded from its JSON, so that two encodings of one patch compare
// equal.
type answer struct {
	APIVersion, Kind string
	Response         *admissionv1.AdmissionResponse
	Patch            any
}

// serveReviewBytes posts body to handler as the API server does and returns
// the body of the answer.
func serveReviewBytes(t *testing.T, handler http.Handler, body []byte) []byte {
	t.Helper()
	return post(t, handler, "application/json", body)
}

func post(t *testing.T, handler http.Handler, contentType string, body []byte) []byte {
	t.Helper()
	var rd io.Reader // nil: http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r := httptest.NewRequestWithContext(log.IntoContext(context.Background(), quiet), http.MethodPost, keyhookadmission.PodPath, rd)
	r.Header.Set("Content-Type", contentType)
	w := httptest.NewRecorder()
	handler.ServeHTTP(w, r)
	return w.Body.Bytes()
}

// serveReview posts body to handler as the API server does and reads the
// AdmissionReview it answers with.
func serveReview(t *testing.T, handler http.Handler, contentType string, body []byte) answer {
	t.Helper()
	out := post(t, handler, contentType, body)
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &ar); err != nil {
		t.Fatalf("the answer is no AdmissionReview: %v\n%s", err, out)
	}
	a := answer{APIVersion: ar.APIVersion, Kind: ar.Kind, Response: ar.Response}
	if ar.Response != nil && len(ar.Response.Patch) > 0 {
		if err := json.Unmarshal(ar.Response.Patch, &a.Patch); err != nil {
			t.Fatalf("the patch is not JSON: %v\n%s", err, ar.Response.Patch)
		}
		ar.Response.Patch = nil
	}
	return a
}

// reviewBody is the AdmissionReview of apiVersion asking to create pod in ns.
func reviewBody(t *testing.T, apiVersion string, pod *corev1.Pod, ns string) []byte {
	t.Helper()
	req := podRequest(t, pod, ns)
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: apiVersion, Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sameReviewAsControllerRuntime checks that the injector's own ServeHTTP
// answers body as controller-runtime's webhook.Admission around the same
// injector does: the same review version and kind, and the same response
// (uid, decision, status, patch, warnings). With messageToo false the
// status message, which names the decoder's error, is left out.
func sameReviewAsControllerRuntime(t *testing.T, h *keyhookadmission.PodInjector, contentType string, body []byte, messageToo bool) answer {
	t.Helper()
	got := serveReview(t, h, contentType, body)
	want := serveReview(t, &webhook.Admission{Handler: h}, contentType, body)
	if !messageToo {
		for _, a := range []answer{got, want} {
			if a.Response != nil && a.Response.Result != nil {
				a.Response.Result.Message = ""
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ServeHTTP answers otherwise than controller-runtime's webhook.Admission (-webhook.Admission +ServeHTTP):\n%s\nrequest: %s", diff, body)
	}
	return got
}

// TestServeHTTP checks the injector's own HTTP handling against
// controller-runtime's webhook.Admission, which served the pod path before:
// injections, denials, both review versions, and requests it refuses.
func TestServeHTTP(t *testing.T) {
	h := fuzzInjector(t)
	for name, tc := range map[string]struct {
		contentType string
		body        []byte
		messageToo  bool
		code        int32
		// ownAnswer: not compared with webhook.Admission, which decodes
		// laxly.
		ownAnswer bool
	}{
		"an injection": {
			body:       reviewBody(t, "admission.k8s.io/v1", fuzzPod(shape{0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1}, "db", "", "", ""), "team-a"),
			messageToo: true, code: http.StatusOK,
		},
		"an injection with a warning, v1beta1": {
			body: reviewBody(t, "admission.k8s.io/v1beta1", func() *corev1.Pod {
				p := fuzzPod(shape{0, 1, 0}, "db", "", "", "")
				p.Labels = map[string]string{"policy": "default"}
				return p
			}(), "team-a"),
			messageToo: true, code: http.StatusOK,
		},
		"a pod with keyhook's names, the review indented": {
			// Such a pod is decoded whole from its bytes in the review.
			body: func() []byte {
				var b bytes.Buffer
				if err := json.Indent(&b, reviewBody(t, "admission.k8s.io/v1", func() *corev1.Pod {
					p := fuzzPod(shape{0, 1, 0}, "db", "", "", "")
					p.Spec.Containers[0].Name = mutate.AgentContainerName
					return p
				}(), "team-a"), "", "  \t"); err != nil {
					t.Fatal(err)
				}
				return b.Bytes()
			}(),
			messageToo: true, code: http.StatusForbidden,
		},
		"a denial": {
			body:       reviewBody(t, "admission.k8s.io/v1", fuzzPod(shape{0, 1, 0, 0}, "team-b/db", "", "", ""), "team-a"),
			messageToo: true, code: http.StatusForbidden,
		},
		"nothing asked": {
			body:       reviewBody(t, "admission.k8s.io/v1", fuzzPod(shape{0, 0, 0}, "", "", "", ""), "team-a"),
			messageToo: true, code: http.StatusOK,
		},
		"no request":           {body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), messageToo: true, code: http.StatusBadRequest},
		"no body":              {code: http.StatusBadRequest, messageToo: true},
		"a duplicate name":     {body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"a","uid":"b"}}`), code: http.StatusBadRequest, ownAnswer: true},
		"not JSON":             {body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`), code: http.StatusBadRequest},
		"another content type": {contentType: "application/yaml", body: []byte(`{}`), messageToo: true, code: http.StatusBadRequest},
		// webhook.Admission decodes a Pod as an empty review, and answers
		// "the request holds no pod" as a v1 Pod.
		"another kind": {body: []byte(`{"apiVersion":"v1","kind":"Pod"}`), code: http.StatusBadRequest, ownAnswer: true},
	} {
		t.Run(name, func(t *testing.T) {
			ct := tc.contentType
			if ct == "" {
				ct = "application/json"
			}
			var got answer
			if tc.ownAnswer {
				got = serveReview(t, h, ct, tc.body)
			} else {
				got = sameReviewAsControllerRuntime(t, h, ct, tc.body, tc.messageToo)
			}
			if got.Response == nil || got.Response.Result == nil || got.Response.Result.Code != tc.code {
				t.Fatalf("answered %+v, want code %d", got.Response, tc.code)
			}
			if tc.code == http.StatusOK && strings.Contains(name, "injection") && got.Patch == nil {
				t.Fatal("an injection without a patch")
			}
			if strings.Contains(name, "warning") && len(got.Response.Warnings) == 0 {
				t.Fatal("no warning")
			}
			if strings.Contains(name, "v1beta1") && got.APIVersion != "admission.k8s.io/v1beta1" {
				t.Fatalf("answered a v1beta1 review with %s", got.APIVersion)
			}
		})
	}
}

// TestServeHTTPReadsTheWholeBody sends the same review with a
// Content-Length that is right, unknown (chunked), too small and too large:
// the handler reads the body to its end whatever it was told, and answers
// as for the right length.
func TestServeHTTPReadsTheWholeBody(t *testing.T) {
	h := fuzzInjector(t)
	body := reviewBody(t, "admission.k8s.io/v1", fuzzPod(shape{0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1}, "db", "", "", ""), "team-a")
	want := serveReview(t, h, "application/json", body)
	if want.Patch == nil {
		t.Fatalf("not injected: %+v", want.Response)
	}
	for _, length := range []int64{int64(len(body)), -1, int64(len(body)) - 100, int64(len(body)) + 100} {
		r := httptest.NewRequestWithContext(log.IntoContext(context.Background(), quiet), http.MethodPost, keyhookadmission.PodPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.ContentLength = length
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(w.Body.Bytes(), &ar); err != nil {
			t.Fatalf("Content-Length %d: the answer is no AdmissionReview: %v\n%s", length, err, w.Body.Bytes())
		}
		var patch any
		if err := json.Unmarshal(ar.Response.Patch, &patch); err != nil {
			t.Fatalf("Content-Length %d: %v: %+v", length, err, ar.Response)
		}
		ar.Response.Patch = nil
		if diff := cmp.Diff(want, answer{APIVersion: ar.APIVersion, Kind: ar.Kind, Response: ar.Response, Patch: patch}); diff != "" {
			t.Errorf("Content-Length %d of %d (-right +this):\n%s", length, len(body), diff)
		}
	}
}
