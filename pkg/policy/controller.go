package policy

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
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
)

// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;patch
// +kubebuilder:rbac:groups=keyhook.dev,resources=clusterinjectionpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=keyhook.dev,resources=clusterinjectionpolicies/status,verbs=get;update;patch

// NamespaceLabeler keeps the keyhook.dev/injection label of every namespace
// in line with the ClusterInjectionPolicies that select it, so that the
// apiserver routes its pods to the webhook entry that fails closed
// ("enforced") or open ("default"), and keeps each policy's status count.
type NamespaceLabeler struct {
	Client client.Client
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
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Valid", Message: "the policy's selectors are valid", ObservedGeneration: p.Generation}
	for _, ns := range list.Items {
		ok, err := SelectsNamespace(p, ns.Labels)
		if err != nil {
			cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidSelector", err.Error()
			break
		}
		if ok {
			count++
		}
	}
	if _, err := metav1.LabelSelectorAsSelector(p.Spec.PodSelector); err != nil {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, "InvalidSelector", "spec.podSelector: "+err.Error()
	}
	patch := client.MergeFrom(p.DeepCopy())
	p.Status.Namespaces = count
	meta.SetStatusCondition(&p.Status.Conditions, cond)
	return reconcile.Result{}, client.IgnoreNotFound(r.Client.Status().Patch(ctx, p, patch))
}
