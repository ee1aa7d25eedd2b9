package admission_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyhook/keyhook/bench/fixture"
	"github.com/keyhook/keyhook/bench/loadgen"
	keyhookadmission "github.com/keyhook/keyhook/pkg/admission"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// cacheReader serves objects as controller-runtime's informer cache does:
// a map lookup and a deep copy per Get, a copy of every item per List.
type cacheReader struct {
	scheme  *runtime.Scheme
	objects map[reflect.Type]map[client.ObjectKey]client.Object
}

func newCacheReader(scheme *runtime.Scheme, objs ...client.Object) *cacheReader {
	r := &cacheReader{scheme: scheme, objects: map[reflect.Type]map[client.ObjectKey]client.Object{}}
	for _, o := range objs {
		t := reflect.TypeOf(o)
		if r.objects[t] == nil {
			r.objects[t] = map[client.ObjectKey]client.Object{}
		}
		r.objects[t][client.ObjectKeyFromObject(o)] = o
	}
	return r
}

func (r *cacheReader) Get(_ context.Context, key client.ObjectKey, out client.Object, _ ...client.GetOption) error {
	obj, ok := r.objects[reflect.TypeOf(out)][key]
	if !ok {
		gvk, _ := apiutil.GVKForObject(out, r.scheme)
		return newNotFound(gvk, key.Name)
	}
	reflect.ValueOf(out).Elem().Set(reflect.ValueOf(obj.DeepCopyObject()).Elem())
	return nil
}

func (r *cacheReader) List(_ context.Context, list client.ObjectList, _ ...client.ListOption) error {
	items := reflect.ValueOf(list).Elem().FieldByName("Items")
	itemType := reflect.PointerTo(items.Type().Elem())
	for _, o := range r.objects[itemType] {
		items.Set(reflect.Append(items, reflect.ValueOf(o.DeepCopyObject()).Elem()))
	}
	return nil
}

func newNotFound(gvk schema.GroupVersionKind, name string) error {
	return &notFound{gvk: gvk, name: name}
}

type notFound struct {
	gvk  schema.GroupVersionKind
	name string
}

func (e *notFound) Error() string { return fmt.Sprintf("%s %q not found", e.gvk.Kind, e.name) }

// Status makes apierrors.IsNotFound recognise it.
func (e *notFound) Status() metav1.Status {
	return metav1.Status{Status: metav1.StatusFailure, Reason: metav1.StatusReasonNotFound, Code: http.StatusNotFound, Message: e.Error()}
}

// benchInjector is the webhook's pod injector as cmd/webhook wires it,
// reading the namespace, the store and the two ExternalSecrets of the
// fixture pod from a cache, and logging as the binary does (JSON, info).
func benchInjector(b testing.TB) (*keyhookadmission.PodInjector, context.Context, *loadgen.Review) {
	b.Helper()
	scheme := testScheme(b)
	const ns = "shop"
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{"kubernetes.io/metadata.name": ns}}},
		fixture.Store(ns, "https://vault.vault.svc:8200", ns),
	}
	for _, es := range fixture.ExternalSecrets(ns) {
		objs = append(objs, es)
	}
	h := &keyhookadmission.PodInjector{
		Resolver: &resolve.Resolver{Reader: newCacheReader(scheme, objs...)},
		Config: mutate.Config{
			AgentImage:           "ghcr.io/keyhook/init-agent:v0.1.0",
			AgentImagePullPolicy: corev1.PullIfNotPresent,
			AgentArgs:            []string{"--deadline=2m0s"},
		},
	}
	review, err := loadgen.NewReview(fixture.Pod(ns))
	if err != nil {
		b.Fatal(err)
	}
	ctx := log.IntoContext(context.Background(), zap.New(zap.WriteTo(io.Discard)))
	return h, ctx, review
}

// BenchmarkAdmission is the pod injector's Handle on the fixture pod (a
// 6 KB AdmissionReview: 2 containers, 3 volumes, 20 env vars) injecting
// two ExternalSecrets resolved from the cache: decode, parse, resolve,
// mutate, encode, JSON patch.
func BenchmarkAdmission(b *testing.B) {
	h, ctx, review := benchInjector(b)
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(review.Body(nil, "2f0b7a9e-3c1d-4e5f-8a6b-7c8d9e0f1a2b"), &ar); err != nil {
		b.Fatal(err)
	}
	req := admission.Request{AdmissionRequest: *ar.Request}
	first := h.Handle(ctx, req)
	if !first.Allowed || len(first.Patches) == 0 {
		b.Fatalf("fixture pod not injected: %+v", first.Result)
	}
	// The JSON patch's size: what the API server decodes, applies and
	// stores on top of the pod.
	patch, err := json.Marshal(first.Patches)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(len(patch)), "patch-bytes")
	b.ReportMetric(float64(len(first.Patches)), "patch-ops")
	b.SetBytes(int64(review.Size()))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		h.Handle(ctx, req)
	}
}

// BenchmarkAdmissionHTTP adds what the webhook server does around Handle:
// reading and decoding the AdmissionReview and encoding the response (TLS
// and the network excluded), as the webhook serves it (PodInjector's own
// ServeHTTP).
func BenchmarkAdmissionHTTP(b *testing.B) {
	benchmarkHTTP(b, func(h *keyhookadmission.PodInjector) http.Handler { return h })
}

// BenchmarkAdmissionHTTPControllerRuntime is BenchmarkAdmissionHTTP through
// controller-runtime's webhook.Admission, which served the pod path before,
// for comparison.
func BenchmarkAdmissionHTTPControllerRuntime(b *testing.B) {
	benchmarkHTTP(b, func(h *keyhookadmission.PodInjector) http.Handler { return &webhook.Admission{Handler: h} })
}

func benchmarkHTTP(b *testing.B, handler func(*keyhookadmission.PodInjector) http.Handler) {
	h, ctx, review := benchInjector(b)
	wh := handler(h)
	body := review.Body(nil, "2f0b7a9e-3c1d-4e5f-8a6b-7c8d9e0f1a2b")
	checker := loadgen.NewChecker(review, fixture.InjectedNames)
	serve := func() *httptest.ResponseRecorder {
		r := httptest.NewRequestWithContext(ctx, http.MethodPost, keyhookadmission.PodPath, bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		wh.ServeHTTP(w, r)
		return w
	}
	if err := checker.Check(serve().Body.Bytes(), "2f0b7a9e-3c1d-4e5f-8a6b-7c8d9e0f1a2b"); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		serve()
	}
}

// TestBenchmarkPodSameAsBefore sends the benchmarks' pod (bench/fixture, as
// the API server sends it) to the injector as the benchmarks wire it, and
// checks the answer against the whole-pod decode with Apply and Patch, and
// the HTTP answer against controller-runtime's webhook.Admission: what the
// benchmarks measure is the same admission as before, only faster.
func TestBenchmarkPodSameAsBefore(t *testing.T) {
	h, _, review := benchInjector(t)
	full, _, _ := benchInjector(t)
	keyhookadmission.FullDecode(full)
	body := review.Body(nil, "2f0b7a9e-3c1d-4e5f-8a6b-7c8d9e0f1a2b")
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil {
		t.Fatal(err)
	}
	sameAsFullDecode(t, h, full, admission.Request{AdmissionRequest: *ar.Request})
	got := sameReviewAsControllerRuntime(t, h, "application/json", body, true)
	if got.Patch == nil {
		t.Fatal("the benchmarks' pod is not injected")
	}
	if err := loadgen.NewChecker(review, fixture.InjectedNames).Check(serveReviewBytes(t, h, body), "2f0b7a9e-3c1d-4e5f-8a6b-7c8d9e0f1a2b"); err != nil {
		t.Fatal(err)
	}
}
