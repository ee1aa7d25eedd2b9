package policy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=keyhook.dev,resources=clusterinjectionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=keyhook.dev,resources=clusterinjectionpolicies/status,verbs=get;update;patch

// +kubebuilder:rbac:groups="",resources=pods,verbs=list
// +kubebuilder:rbac:groups=keyhook.dev,resources=externalsecrets,verbs=get;list;watch

// NamespaceLabeler keeps the keyhook.dev/injection label of every namespace
// in line with the ClusterInjectionPolicies that select it, so that the
// apiserver routes its pods to the webhook entry that fails closed
// ("enforced") or open ("default"), and keeps each policy's status count.
type NamespaceLabeler struct {
	Client client.Client
	// Pods, when set, lists pods (uncached: the API reader) for the
	// PodsInjected condition of enforcing policies, a page at a time; nil
	// leaves it out.
	Pods client.Reader
	// ExemptNamespaces are never sent to the webhook (kube-system, keyhook's
	// own): a policy cannot be enforced there, so their pods are not
	// reported.
	ExemptNamespaces []string
}

// ConditionPodsInjected is the condition of an enforcing
// ClusterInjectionPolicy that says whether every pod it selects carries
// keyhook's injection of what the policy injects. Pods created before the
// policy (or before keyhook labelled a new namespace) were admitted without
// it and run without their secrets until they are recreated, and static
// pods are never injected; the condition names them.
const ConditionPodsInjected = "PodsInjected"

// recheckPods is how often an enforcing policy's pods are listed again:
// pods admitted before the policy only go away, so a slow recheck suffices.
const recheckPods = 5 * time.Minute

// maxNamed bounds the pods a condition message names.
const maxNamed = 5

// podPage is how many pods one List of the PodsInjected check returns: the
// pods are read whole (injected-ness is in the spec), and a namespace's
// pods at once could be gigabytes.
const podPage = 100

// NotInjected returns namespace/name of the pods p selects that do not carry
// keyhook's injection of the ExternalSecrets p injects, sorted; pods is every pod of the
// namespaces p selects, nsLabels the labels of those namespaces, targets the
// Secret each ExternalSecret p injects syncs into, by namespace
// (mutate.NotDelivered). Terminating pods are left out; pods with the mirror annotation, which
// keyhook admits unchanged from their node's kubelet, are named
// "namespace/name (static pod)".
//
// Injected-ness is read from the pod's spec (mutate.NotDelivered), never
// from the keyhook.dev/status annotation: whoever may update a pod can add
// the annotation to one admitted before the policy and hide it, while its
// containers and volumes cannot change after creation.
func NotInjected(p *v1alpha1.ClusterInjectionPolicy, nsLabels map[string]map[string]string, targets map[string]map[string]string, pods []corev1.Pod) []string {
	var out []string
	for i := range pods {
		if name, missed := notInjected(p, nsLabels, targets[pods[i].Namespace], &pods[i]); missed {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// notInjected is NotInjected for one pod: its name as reported, and whether
// it is.
func notInjected(p *v1alpha1.ClusterInjectionPolicy, nsLabels map[string]map[string]string, targets map[string]string, pod *corev1.Pod) (string, bool) {
	if pod.DeletionTimestamp != nil {
		return "", false
	}
	if ok, _ := selects(p, nsLabels[pod.Namespace], pod.Labels); !ok {
		return "", false
	}
	if _, mirror := pod.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
		return pod.Namespace + "/" + pod.Name + " (static pod)", true
	}
	// What the policy injects; not the names of the pod's own
	// annotation, which its tenant may edit after creation.
	if len(mutate.NotDelivered(pod, p.Spec.Inject, targets)) > 0 {
		return pod.Namespace + "/" + pod.Name, true
	}
	return "", false
}

// missedPods are the pods NotInjected reports, gathered a page of pods at a
// time: how many, and the first maxNamed names in order. No pod is kept.
type missedPods struct {
	count int
	named []string
}

func (m *missedPods) add(name string) {
	m.count++
	i, _ := slices.BinarySearch(m.named, name)
	if i < maxNamed {
		m.named = slices.Insert(m.named, i, name)[:min(len(m.named)+1, maxNamed)]
	}
}

// podsInjected is the PodsInjected condition for the pods NotInjected found.
func podsInjected(missed missedPods, generation int64) metav1.Condition {
	if missed.count == 0 {
		return metav1.Condition{Type: ConditionPodsInjected, Status: metav1.ConditionTrue, Reason: "AllInjected",
			Message: "every pod the policy selects was injected by keyhook", ObservedGeneration: generation}
	}
	named := strings.Join(missed.named, ", ")
	if missed.count > len(missed.named) {
		named += fmt.Sprintf(" and %d more", missed.count-len(missed.named))
	}
	return metav1.Condition{Type: ConditionPodsInjected, Status: metav1.ConditionFalse, Reason: "PodsNotInjected",
		Message: fmt.Sprintf("%d pods the policy selects run without keyhook's injection (created before their namespace was enforced, or static pods, which keyhook never injects): %s; delete them, or roll their workloads, to have them injected",
			missed.count, named),
		ObservedGeneration: generation}
}

// targets maps each of the ExternalSecrets names of namespace ns that exists
// to the Secret it syncs into, which secret mode mounts.
func (r *NamespaceLabeler) targets(ctx context.Context, ns string, names []string) (map[string]string, error) {
	targets := make(map[string]string, len(names))
	for _, name := range names {
		es := &v1alpha1.ExternalSecret{}
		if err := r.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, es); err != nil {
			if apierrors.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("reading ExternalSecret %s/%s: %w", ns, name, err)
		}
		targets[name] = es.TargetName()
	}
	return targets, nil
}

// missed pages through the pods of the namespaces p selects (selected: their
// labels) and gathers those NotInjected reports, holding one page of pods
// at a time.
func (r *NamespaceLabeler) missed(ctx context.Context, p *v1alpha1.ClusterInjectionPolicy, selected map[string]map[string]string) (missedPods, error) {
	var m missedPods
	for _, ns := range slices.Sorted(maps.Keys(selected)) {
		targets, err := r.targets(ctx, ns, p.Spec.Inject)
		if err != nil {
			return missedPods{}, err
		}
		next := ""
		for {
			// Whole pods: whether one is injected is read from its spec.
			list := &corev1.PodList{}
			if err := r.Pods.List(ctx, list, client.InNamespace(ns), client.Limit(podPage), client.Continue(next)); err != nil {
				return missedPods{}, fmt.Errorf("listing the pods of namespace %s: %w", ns, err)
			}
			for i := range list.Items {
				if name, missed := notInjected(p, selected, targets, &list.Items[i]); missed {
					m.add(name)
				}
			}
			if next = list.Continue; next == "" {
				break
			}
		}
	}
	return m, nil
}

// InjectionLabel is the value of the keyhook.dev/injection label that the
// policies ask for a namespace with these labels; "" for none.
func InjectionLabel(policies []v1alpha1.ClusterInjectionPolicy, nsLabels map[string]string) string {
	value := ""
	for i := range policies {
		ok, err := SelectsNamespace(&policies[i], nsLabels)
		if err != nil || !ok {
			continue
		}
		if policies[i].Spec.Enforce {
			return annotations.InjectionEnforced
		}
		value = annotations.InjectionDefault
	}
	return value
}

// SetupWithManager registers the controllers: namespaces are reconciled on
// their own changes and, all of them, on any policy change.
func (r *NamespaceLabeler) SetupWithManager(mgr ctrl.Manager) error {
	all := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &corev1.NamespaceList{}
		if err := r.Client.List(ctx, list); err != nil {
			log.FromContext(ctx).Error(err, "listing namespaces")
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, ns := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: ns.Name}})
		}
		return reqs
	})
	if err := ctrl.NewControllerManagedBy(mgr).
		Named("namespace-injection-label").
		For(&corev1.Namespace{}, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Watches(&v1alpha1.ClusterInjectionPolicy{}, all, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Complete(reconcile.Func(r.reconcileNamespace)); err != nil {
		return err
	}
	policies := handler.EnqueueRequestsFromMapFunc(func(ctx context.Context, _ client.Object) []reconcile.Request {
		list := &v1alpha1.ClusterInjectionPolicyList{}
		if err := r.Client.List(ctx, list); err != nil {
			return nil
		}
		reqs := make([]reconcile.Request, 0, len(list.Items))
		for _, p := range list.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: types.NamespacedName{Name: p.Name}})
		}
		return reqs
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("clusterinjectionpolicy-status").
		For(&v1alpha1.ClusterInjectionPolicy{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Watches(&corev1.Namespace{}, policies, builder.WithPredicates(predicate.LabelChangedPredicate{})).
		Complete(reconcile.Func(r.reconcilePolicy))
}

func (r *NamespaceLabeler) reconcileNamespace(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	ns := &corev1.Namespace{}
	if err := r.Client.Get(ctx, req.NamespacedName, ns); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if ns.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	list := &v1alpha1.ClusterInjectionPolicyList{}
	if err := r.Client.List(ctx, list); err != nil {
		return reconcile.Result{}, err
	}
	want := InjectionLabel(list.Items, ns.Labels)
	have, has := ns.Labels[annotations.Injection]
	if want == have && (want != "") == has {
		return reconcile.Result{}, nil
	}
	patch := client.MergeFromWithOptions(ns.DeepCopy(), client.MergeFromWithOptimisticLock{})
	if want == "" {
		delete(ns.Labels, annotations.Injection)
	} else {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[annotations.Injection] = want
	}
	if err := r.Client.Patch(ctx, ns, patch); err != nil {
		return reconcile.Result{}, fmt.Errorf("labelling namespace %s: %w", ns.Name, err)
	}
	log.FromContext(ctx).Info("namespace injection label", "namespace", ns.Name, "injection", want)
	return reconcile.Result{}, nil
}

func (r *NamespaceLabeler) reconcilePolicy(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	p := &v1alpha1.ClusterInjectionPolicy{}
	if err := r.Client.Get(ctx, req.NamespacedName, p); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	list := &corev1.NamespaceList{}
	if err := r.Client.List(ctx, list); err != nil {
		return reconcile.Result{}, err
	}
	count := 0
	selected := map[string]map[string]string{}
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Valid", Message: "the policy's selectors are valid", ObservedGeneration: p.Generation}
	namespacesKnown := true
	for _, ns := range list.Items {
		ok, err := SelectsNamespace(p, ns.Labels)
		if err != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidSelector", err.Error()
			namespacesKnown = false
			break
		}
		if ok {
			count++
			if !slices.Contains(r.ExemptNamespaces, ns.Name) {
				selected[ns.Name] = ns.Labels
			}
		}
	}
	if _, err := metav1.LabelSelectorAsSelector(p.Spec.PodSelector); err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidSelector", "spec.podSelector: "+err.Error()
		if p.Spec.Enforce {
			cond.Message += "; the policy enforces, so it selects every pod of its namespaces until this is fixed"
		}
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Status.Namespaces = count
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	var result reconcile.Result
	// An enforcing policy with a podSelector that does not parse still
	// enforces its namespaces (selecting every pod): its pods are checked.
	if !p.Spec.Enforce || r.Pods == nil || !namespacesKnown {
		meta.RemoveStatusCondition(&p.Status.Conditions, ConditionPodsInjected)
	} else {
		missed, err := r.missed(ctx, p, selected)
		if err != nil {
			return reconcile.Result{}, err
		}
		meta.SetStatusCondition(&p.Status.Conditions, podsInjected(missed, p.Generation))
		result.RequeueAfter = recheckPods
	}
	return result, client.IgnoreNotFound(r.Client.Status().Patch(ctx, p, patch))
}
