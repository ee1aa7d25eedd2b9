// Package admission adapts keyhook's pod mutation to admission webhooks: it
// decodes the request, runs the pure pipeline of pkg/mutate and answers with
// a patch, or with a denial that says what is wrong and how to fix it.
package admission

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/injection"
	"github.com/keyhook/keyhook/pkg/mutate"
	"github.com/keyhook/keyhook/pkg/policy"
	"github.com/keyhook/keyhook/pkg/resolve"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
)

// PodPath is the path the pod mutation is served at.
const PodPath = webhookconfig.PodPath

// EnforcedPodPath is the path the pod mutation of the enforced entry is
// served at: a PodInjector with Enforced set.
const EnforcedPodPath = webhookconfig.EnforcedPodPath

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

// Metrics are the admission path's collectors, registered by the role that
// serves admission (internal/app/webhook), not on import.
func Metrics() []prometheus.Collector { return []prometheus.Collector{AdmissionsTotal} }

// +kubebuilder:rbac:groups=keyhook.dev,resources=externalsecrets;secretstores;clustersecretstores,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch

// PodInjector injects the init-agent into pods that ask for it.
type PodInjector struct {
	// Resolver reads ExternalSecrets and stores, from the informer cache.
	Resolver *resolve.Resolver
	// Config is the webhook-wide part of the mutation.
	Config mutate.Config
	// Enforced is set on the injector of the enforced entry
	// (EnforcedPodPath): the API server sends it only pods of namespaces it
	// sees labelled keyhook.dev/injection=enforced, so the namespace is
	// enforced even when this replica's cache does not know it yet.
	Enforced bool
	// Live reads ClusterInjectionPolicies and the namespace from the API
	// server, for a namespace that is enforced (Enforced, or its cached
	// label says so) while no cached policy enforces it: the cache lags
	// the policy keyhook's controller labelled the namespace for. Nil:
	// such a pod is denied at once. Read only in that window, so the
	// common path makes no API call.
	Live client.Reader
	// LiveTimeout bounds that read; zero is DefaultLiveTimeout.
	LiveTimeout time.Duration

	// fullDecode decodes every pod whole and patches it with Apply and
	// Patch, as keyhook did before PodView and Ops: set by tests only,
	// which compare the two.
	fullDecode bool
}

var _ admission.Handler = (*PodInjector)(nil)

// +kubebuilder:rbac:groups=keyhook.dev,resources=clusterinjectionpolicies,verbs=get;list;watch

// Handle implements admission.Handler.
func (h *PodInjector) Handle(ctx context.Context, req admission.Request) admission.Response {
	return h.handleView(ctx, req, nil)
}

// handleView is Handle for a request whose pod, req.Object.Raw, is decoded
// already as view (nil: not yet).
func (h *PodInjector) handleView(ctx context.Context, req admission.Request, view *mutate.PodView) admission.Response {
	resp, result := h.handle(ctx, req, view)
	AdmissionsTotal.WithLabelValues(result).Inc()
	return resp
}

func (h *PodInjector) handle(ctx context.Context, req admission.Request, view *mutate.PodView) (admission.Response, string) {
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, errors.New("the request holds no pod")), ResultError
	}
	// Only what the decision and the mutation read is decoded (a fraction
	// of the cost of a whole Pod), strictly: see mutate.DecodePod. The
	// whole pod is decoded only for a pod that carries keyhook's names.
	var (
		pod *corev1.Pod
		err error
	)
	switch {
	case h.fullDecode:
		if pod, err = decodePod(req.Object.Raw); err == nil {
			view = mutate.ViewOf(pod)
		}
	case view == nil:
		view, err = mutate.DecodePod(req.Object.Raw)
	}
	if err != nil {
		return admission.Errored(http.StatusBadRequest, err), ResultError
	}
	name := view.Metadata.Name
	if name == "" {
		// Pods of controllers have only generateName at admission.
		name = view.Metadata.GenerateName
	}
	// The pod's keys are passed with each line, not bound with
	// WithValues, which costs a dozen allocations per admission.
	logger := podLogger{log.FromContext(ctx), []any{"namespace", req.Namespace, "pod", name, "uid", req.UID}}
	ns := req.Namespace
	if ns == "" {
		ns = view.Metadata.Namespace
	}
	// A mirror pod is the API server's copy of a static pod, which the
	// kubelet runs from its node's disk whatever the copy says. Only that
	// node's kubelet creates one: anyone else who sets the annotation makes
	// an ordinary pod that a virtual-kubelet provider bound to spec.nodeName
	// would run, so the annotation alone exempts nothing.
	_, mirror := view.Metadata.Annotations[corev1.MirrorPodAnnotationKey]
	if mirror && webhookconfig.IsNodeOf(req.UserInfo.Username, req.UserInfo.Groups, view.Spec.NodeName) {
		// Injecting it could not change what runs, and the API server's
		// ServiceAccount admission refuses a mirror pod with
		// service-account tokens or secrets, which would leave the static
		// pod running unseen. Enforcing policies report it (PodsInjected).
		logger.Info("admitted a mirror pod unchanged", "node", view.Spec.NodeName)
		return admission.Allowed("mirror pod").WithWarnings(mirrorPodWarning), ResultSkipped
	}
	// The ClusterInjectionPolicies and the namespace, from the informer
	// cache; pkg/injection decides, as it does for rollouts.
	in, err := injection.Read(ctx, h.Resolver.Reader, ns)
	if err != nil {
		// The detail is logged, not answered: a client error names
		// keyhook's identity and what it may read.
		logger.Error(err, "reading ClusterInjectionPolicies")
		return admission.Errored(http.StatusInternalServerError, errors.New(readFailed)), ResultError
	}
	if mirror && (h.Enforced || in.NamespaceLabels[annotations.Injection] == annotations.InjectionEnforced) {
		// Backed by the ValidatingAdmissionPolicy MirrorPodPolicy, which
		// holds while keyhook is bypassed.
		msg := mirrorPodDenied(ns, req.UserInfo.Username, view.Spec.NodeName)
		logger.Info("denied", "reason", msg)
		return admission.Denied(msg), ResultDenied
	}
	if h.enforcementUnknown(in) && h.Live != nil {
		// The cache lags: confirm with the API server before denying.
		if in, err = h.readLive(ctx, ns); err != nil {
			// Denied, not errored: the API server's own timeout would
			// fail open on the entries that do; the detail is logged.
			logger.Error(err, "reading ClusterInjectionPolicies from the API server")
			return admission.Denied(fmt.Sprintf(liveReadFailed, ns)), ResultDenied
		}
	}
	if h.enforcementUnknown(in) {
		// Admitting the pod would start it without what the enforcing
		// policy injects; a denial is retried (a ReplicaSet retries by
		// itself) and succeeds once the policy is known. A policy just
		// deleted denies too until keyhook removes the namespace's label:
		// the fail-closed side of the same window.
		msg := fmt.Sprintf("namespace %q is enforced by keyhook (label %s=%s) but no ClusterInjectionPolicy known to this webhook replica enforces it: the policy was just created or changed and has not reached the replica yet, or was just deleted and keyhook has not yet removed the label; retry in a few seconds",
			ns, annotations.Injection, annotations.InjectionEnforced)
		logger.Info("denied", "reason", msg)
		return admission.Denied(msg), ResultDenied
	}
	plan, skipped, err := injection.For(ns, in, view.Metadata.Annotations, view.Metadata.Labels)
	for _, err := range skipped {
		logger.Error(err, "a ClusterInjectionPolicy's selector does not parse")
	}
	if err != nil {
		logger.Info("denied", "reason", err.Error())
		return admission.Denied(err.Error()), ResultDenied
	}
	if plan.OptedOut || plan.Request == nil {
		return admission.Allowed("no injection requested"), ResultSkipped
	}
	if mirror {
		// Not its node's: an ordinary pod, which would be injected. The
		// API server's ServiceAccount admission would refuse the injected
		// pod (a mirror pod may not use service-account tokens) with a
		// message that does not say why; this one does.
		msg := fmt.Sprintf("mirror pods (annotation %s) may only be created by their node's kubelet (user %s<spec.nodeName>, group %s), and the API server refuses a mirror pod with the service-account token keyhook would inject for %s; remove the annotation",
			corev1.MirrorPodAnnotationKey, webhookconfig.NodeUserPrefix, webhookconfig.NodesGroup, injectionFor(plan))
		logger.Info("denied", "reason", msg)
		return admission.Denied(msg), ResultDenied
	}
	want, decision, explicit := plan.Request, plan.Decision, plan.Explicit
	var warnings []string
	sources := make([]*resolve.Source, 0, len(want.Names))
	names := make([]string, 0, len(want.Names))
	for _, name := range want.Names {
		src, err := h.Resolver.ExternalSecret(ctx, ns, name)
		if err != nil {
			if !resolve.IsDenied(err) {
				logger.Error(err, "resolving ExternalSecret", "externalSecret", name)
				return admission.Errored(http.StatusInternalServerError, err), ResultError
			}
			from := ""
			if decision != nil {
				from = decision.InjectFrom[name]
			}
			switch {
			case decision.Enforced():
				msg := fmt.Sprintf("ClusterInjectionPolicy %s enforces injection in namespace %q, but %v", decision.EnforcingNames(), ns, err)
				logger.Info("denied", "reason", msg)
				return admission.Denied(msg), ResultDenied
			case explicit[name] || from == "":
				msg := "annotation keyhook.dev/inject: " + err.Error()
				logger.Info("denied", "reason", msg)
				return admission.Denied(msg), ResultDenied
			default:
				// A default of a policy that does not enforce: the pod
				// starts without it, and is told why.
				warnings = append(warnings, fmt.Sprintf("keyhook: ClusterInjectionPolicy %q would inject ExternalSecret %q, skipped: %v", from, name, err))
				continue
			}
		}
		sources = append(sources, src)
		names = append(names, name)
	}
	if len(sources) == 0 {
		return admission.Allowed("nothing to inject").WithWarnings(warnings...), ResultSkipped
	}
	want.Names = names
	var ops []jsonpatch.Operation
	if view.Fresh() && !h.fullDecode {
		// The common case, a pod keyhook has not injected: the patch is
		// the operations the injection is made of.
		if ops, err = mutate.Ops(view, h.Config, want, sources); err != nil {
			// Every Apply error comes from what the pod or a store says.
			logger.Info("denied", "reason", err.Error())
			return admission.Denied(err.Error()), ResultDenied
		}
	} else {
		// A pod with keyhook's names: injected before (the API server
		// reinvokes keyhook after a later webhook changed the pod), or
		// using names keyhook reserves. Apply removes and re-adds
		// keyhook's parts, or refuses the pod, on the whole pod.
		if pod == nil {
			if pod, err = decodePod(req.Object.Raw); err != nil {
				return admission.Errored(http.StatusBadRequest, err), ResultError
			}
		}
		out, err := mutate.Apply(pod, h.Config, want, sources)
		if err != nil {
			// Every Apply error comes from what the pod or a store says.
			logger.Info("denied", "reason", err.Error())
			return admission.Denied(err.Error()), ResultDenied
		}
		if ops, err = mutate.Patch(req.Object.Raw, pod, out); err != nil {
			return admission.Errored(http.StatusInternalServerError, err), ResultError
		}
	}
	if len(ops) == 0 {
		// Injected before (the API server reinvokes keyhook after a later
		// webhook changed the pod): nothing to change, and no patch type
		// without a patch, which the API server would refuse.
		return admission.Allowed("already injected").WithWarnings(warnings...), ResultSkipped
	}
	logger.Info("injected", "externalSecrets", want.Names, "mode", want.Mode)
	resp := admission.Patched("", ops...)
	resp.PatchType = &jsonPatchType
	return resp.WithWarnings(warnings...), ResultInjected
}

// DefaultLiveTimeout bounds PodInjector's read of the API server: well
// inside the API server's webhook timeout (keyhook registers 5 s), so that a
// stalled read ends in keyhook's denial rather than in the API server's
// timeout, which admits the pod uninjected on the entries that fail open.
const DefaultLiveTimeout = 2 * time.Second

// readFailed answers a pod whose policies could not be read from the cache.
const readFailed = "keyhook could not read its ClusterInjectionPolicies; retry in a few seconds, and if this persists ask the platform team to check keyhook's webhook logs"

// liveReadFailed denies a pod of an enforced namespace (%q) whose policies
// could not be confirmed with the API server in time.
const liveReadFailed = "namespace %q is enforced by keyhook, and keyhook could not confirm its ClusterInjectionPolicies with the API server in time; retry in a few seconds, and if this persists ask the platform team to check keyhook's webhook logs"

// readLive reads the policies and the namespace from the API server, within
// LiveTimeout.
func (h *PodInjector) readLive(ctx context.Context, ns string) (injection.Inputs, error) {
	timeout := h.LiveTimeout
	if timeout <= 0 {
		timeout = DefaultLiveTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return injection.Read(ctx, h.Live, ns)
}

// mirrorPodDenied is the denial of a mirror pod in an enforced namespace
// that user, not the kubelet of node, creates.
func mirrorPodDenied(ns, user, node string) string {
	if node == "" {
		node = "<none: spec.nodeName is not set>"
	}
	return fmt.Sprintf("mirror pods may only be created by their node's kubelet: namespace %q is enforced by keyhook, and this pod (annotation %s) is created by %q, not by the kubelet of node %s (user %s<spec.nodeName>, group %s); remove the annotation to have the pod injected",
		ns, corev1.MirrorPodAnnotationKey, user, node, webhookconfig.NodeUserPrefix, webhookconfig.NodesGroup)
}

// injectionFor names what plan injects, for a message.
func injectionFor(plan injection.Plan) string {
	if plan.Decision != nil && len(plan.Decision.Policies) > 0 {
		return fmt.Sprintf("ExternalSecrets %q (ClusterInjectionPolicy %s)", plan.Names(), strings.Join(plan.Decision.Policies, ", "))
	}
	return fmt.Sprintf("ExternalSecrets %q (annotation %s)", plan.Names(), annotations.Inject)
}

// mirrorPodWarning is the warning of an admitted mirror pod.
const mirrorPodWarning = "keyhook: mirror pod (annotation " + corev1.MirrorPodAnnotationKey + ") admitted without injection: it is the API server's copy of a static pod, which the kubelet runs from its node's disk, and the API server refuses mirror pods that use service-account tokens or secrets; a ClusterInjectionPolicy enforcing this namespace reports it in its PodsInjected condition"

// enforcementUnknown reports whether the namespace is enforced — the API
// server sent the pod through the enforced entry, or the namespace's label
// says so — while no ClusterInjectionPolicy of in enforces it. Only what
// the API server and keyhook's controller write decides: the entry the API
// server chose, the keyhook.dev/injection label (which only keyhook's
// controller may set, NamespaceLabelPolicy) and the policies; nothing of
// the pod.
func (h *PodInjector) enforcementUnknown(in injection.Inputs) bool {
	if !h.Enforced && in.NamespaceLabels[annotations.Injection] != annotations.InjectionEnforced {
		return false
	}
	return policy.InjectionLabel(in.Policies, in.NamespaceLabels) != annotations.InjectionEnforced
}

// decodePod decodes a whole pod as the API machinery's JSON serializer does
// (case-sensitive, integers kept), without its detour through a second
// decode to read apiVersion and kind: the registration sends only v1 Pods.
// The view the decision was made on comes from the same bytes, with
// duplicate member names refused (mutate.DecodePod), so the two agree.
func decodePod(raw []byte) (*corev1.Pod, error) {
	pod := &corev1.Pod{}
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, pod); err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	return pod, nil
}

// jsonPatchType is the patch type of every patch keyhook answers with,
// shared by the responses, which only read it.
var jsonPatchType = admissionv1.PatchTypeJSONPatch

// podLogger writes log lines about one pod, each with the pod's keys.
type podLogger struct {
	logr.Logger
	keys []any
}

func (l podLogger) Info(msg string, kv ...any) {
	l.Logger.Info(msg, append(slices.Clip(l.keys), kv...)...)
}

func (l podLogger) Error(err error, msg string, kv ...any) {
	l.Logger.Error(err, msg, append(slices.Clip(l.keys), kv...)...)
}
