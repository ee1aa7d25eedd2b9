// Package admission adapts keyhook's pod mutation to admission webhooks: it
// decodes the request, runs the pure pipeline of pkg/mutate and answers with
// a patch, or with a denial that says what is wrong and how to fix it.
package admission

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/resolve"
)

// PodPath is the path the pod mutation is served at.
const PodPath = "/mutate-v1-pod"

// Results of an admission, the values of the result label of AdmissionsTotal.
const (
	ResultInjected = "injected"
	ResultSkipped  = "skipped"
	ResultDenied   = "denied"
	ResultError    = "error"
)

// AdmissionsTotal counts pod admissions by result.
var AdmissionsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "keyhook_admissions_total",
	Help: "Pod admissions handled by the keyhook webhook, by result (injected, skipped, denied, error).",
}, []string{"result"})

func init() {
	metrics.Registry.MustRegister(AdmissionsTotal)
}

// +kubebuilder:rbac:groups=keyhook.dev,resources=externalsecrets;secretstores;clustersecretstores,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// PodInjector injects the init-agent into pods that ask for it.
type PodInjector struct {
	// Resolver reads ExternalSecrets and stores, from the informer cache.
	Resolver *resolve.Resolver
	// Config is the webhook-wide part of the mutation.
	Config mutate.Config
	// Decoder decodes admission requests.
	Decoder admission.Decoder
}

var _ admission.Handler = (*PodInjector)(nil)

// Handle implements admission.Handler.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	resp, result := h.handle(ctx, req)
	AdmissionsTotal.WithLabelValues(result).Inc()
	return resp
}

func (h *PodInjector) handle(ctx context.Context, req admission.Request) (admission.Response, string) {
	pod := &corev1.Pod{}
	if err := h.Decoder.Decode(req, pod); err != nil {
		return admission.Errored(http.StatusBadRequest, err), ResultError
	}
	name := pod.Name
	if name == "" {
		// Pods of controllers have only generateName at admission.
		name = pod.GenerateName
	}
	logger := log.FromContext(ctx).WithValues("namespace", req.Namespace, "pod", name, "uid", req.UID)
	ns := req.Namespace
	if ns == "" {
		ns = pod.Namespace
	}
	want, err := mutate.Parse(ns, pod.Annotations)
	if err != nil {
		logger.Info("denied", "reason", err.Error())
		return admission.Denied(err.Error()), ResultDenied
	}
	if want == nil {
		return admission.Allowed("no injection requested"), ResultSkipped
	}
	sources := make([]*resolve.Source, 0, len(want.Names))
	for _, name := range want.Names {
		src, err := h.Resolver.ExternalSecret(ctx, ns, name)
		if err != nil {
			if resolve.IsDenied(err) {
				msg := "annotation keyhook.dev/inject: " + err.Error()
				logger.Info("denied", "reason", msg)
				return admission.Denied(msg), ResultDenied
			}
			logger.Error(err, "resolving ExternalSecret", "externalSecret", name)
			return admission.Errored(http.StatusInternalServerError, err), ResultError
		}
		sources = append(sources, src)
	}
	out, err := mutate.Apply(pod, h.Config, want, sources)
	if err != nil {
		// Every Apply error comes from what the pod or a store says.
		logger.Info("denied", "reason", err.Error())
		return admission.Denied(err.Error()), ResultDenied
	}
	raw, err := json.Marshal(out)
	if err != nil {
		return admission.Errored(http.StatusInternalServerError, err), ResultError
	}
	logger.Info("injected", "externalSecrets", want.Names)
	return admission.PatchResponseFromRaw(req.Object.Raw, raw), ResultInjected
}
