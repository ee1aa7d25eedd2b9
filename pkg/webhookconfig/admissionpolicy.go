package webhookconfig

import (
	"fmt"
	"slices"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/mutate"
)

// NamespaceLabelerServiceAccount is the service account, in keyhook's
// namespace, that keeps the keyhook.dev/injection label of namespaces: the
// controller's (cmd/controller, manifests/rbac/controller).
// NamespaceLabelPolicy lets no one else touch that label. When the labelling
// moves to another identity, this (or Options.NamespaceLabeler) is the one
// place to change.
const NamespaceLabelerServiceAccount = "keyhook-controller"

// ServiceAccountUsername is the username the API server gives service
// account name of namespace ns.
func ServiceAccountUsername(ns, name string) string {
	return "system:serviceaccount:" + ns + ":" + name
}

// AdmissionPoliciesFile is the file, in manifests/webhook, that holds
// NamespaceLabelPolicy and PodPolicy of Defaults (make manifests).
const AdmissionPoliciesFile = "admissionpolicies.yaml"

// AdmissionPolicies are the ValidatingAdmissionPolicies of an install.
func AdmissionPolicies(o Options) []AdmissionPolicy {
	return []AdmissionPolicy{NamespaceLabelPolicy(o), PodPolicy(o), MirrorPodPolicy(o)}
}

// NodeUserPrefix and NodesGroup make the identity a kubelet authenticates
// as: user NodeUserPrefix + its node's name, in group NodesGroup (what the
// Node authorizer and NodeRestriction admission recognise).
const (
	NodeUserPrefix = "system:node:"
	NodesGroup     = "system:nodes"
)

// IsNodeOf reports whether user, in groups, is the kubelet of node: the
// only creator of node's mirror pods. A pod bound to no node has none.
func IsNodeOf(user string, groups []string, node string) bool {
	return node != "" && user == NodeUserPrefix+node && slices.Contains(groups, NodesGroup)
}

// AdmissionPolicy is a ValidatingAdmissionPolicy and the binding that puts
// it in force (validationActions Deny, everywhere it matches).
type AdmissionPolicy struct {
	Policy  *admissionregistrationv1.ValidatingAdmissionPolicy
	Binding *admissionregistrationv1.ValidatingAdmissionPolicyBinding
}

// Objects are the policy and its binding, in the order to apply them.
func (p AdmissionPolicy) Objects() []any { return []any{p.Policy, p.Binding} }

func bound(name string, spec admissionregistrationv1.ValidatingAdmissionPolicySpec) AdmissionPolicy {
	spec.FailurePolicy = ptr.To(admissionregistrationv1.Fail)
	return AdmissionPolicy{
		Policy: &admissionregistrationv1.ValidatingAdmissionPolicy{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicy"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec:       spec,
		},
		Binding: &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingAdmissionPolicyBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
				PolicyName:        name,
				ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			},
		},
	}
}

// q quotes s as a CEL string literal (CEL accepts Go's double-quoted escapes).
func q(s string) string { return strconv.Quote(s) }

// NamespaceLabelPolicy guards the namespace labels that decide whether a
// namespace's pods must pass keyhook. The API server evaluates it itself, so
// it holds while keyhook is down. It fails closed: an expression that cannot
// be evaluated denies.
//
//   - keyhook.dev/injection routes the namespace's pods to the webhook entry
//     that fails closed ("enforced") or open; only o.NamespaceLabeler may add,
//     change or remove it, on create and on update. Anyone else who could
//     remove it would turn enforcement off for the namespace.
//   - The other labels of an enforced namespace are what ClusterInjectionPolicy
//     namespaceSelectors select on: removing or changing one can take the
//     namespace out of a policy. Only who may update ClusterInjectionPolicies
//     (who could change the policy anyway) may change them; tenants with
//     rights on their namespace may still change its annotations.
func NamespaceLabelPolicy(o Options) AdmissionPolicy {
	label := q(annotations.Injection)
	return bound(o.Name+"-namespace-labels", admissionregistrationv1.ValidatingAdmissionPolicySpec{
		MatchConstraints: &admissionregistrationv1.MatchResources{
			ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"},
						Scope: ptr.To(admissionregistrationv1.ClusterScope),
					},
				},
			}},
		},
		MatchConditions: []admissionregistrationv1.MatchCondition{{
			Name:       "not-keyhook",
			Expression: "request.userInfo.username != " + q(o.NamespaceLabeler),
		}},
		Variables: []admissionregistrationv1.Variable{
			{Name: "old", Expression: "request.operation == 'UPDATE' && has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}"},
			{Name: "new", Expression: "has(object.metadata.labels) ? object.metadata.labels : {}"},
			{Name: "enforced", Expression: fmt.Sprintf("%s in variables.old && variables.old[%s] == %s", label, label, q(annotations.InjectionEnforced))},
		},
		Validations: []admissionregistrationv1.Validation{
			{
				Expression: fmt.Sprintf("(%s in variables.old) == (%s in variables.new) && (!(%s in variables.new) || variables.old[%s] == variables.new[%s])",
					label, label, label, label, label),
				MessageExpression: q(fmt.Sprintf("namespace label %s is set only by keyhook (%s), from the ClusterInjectionPolicies that select the namespace; ",
					annotations.Injection, o.NamespaceLabeler)) +
					" + request.userInfo.username + " + q(" may not add, change or remove it: leave it as it is"),
				Reason: ptr.To(metav1.StatusReasonForbidden),
			},
			{
				Expression: "!variables.enforced || " +
					"(variables.old.all(k, k in variables.new && variables.new[k] == variables.old[k]) && variables.new.all(k, k in variables.old)) || " +
					"authorizer.group('keyhook.dev').resource('clusterinjectionpolicies').check('update').allowed()",
				MessageExpression: q("namespace ") + " + object.metadata.name + " +
					q(fmt.Sprintf(" is enforced by a ClusterInjectionPolicy (%s=%s), and its labels decide which policies select it; only who may update ClusterInjectionPolicies may change them, and ",
						annotations.Injection, annotations.InjectionEnforced)) +
					" + request.userInfo.username + " + q(" may not"),
				Reason: ptr.To(metav1.StatusReasonForbidden),
			},
		},
	})
}

// PodPolicy guards what keyhook added to a pod after its admission, in
// every namespace keyhook injects in. The mutating webhook sees pods only at
// CREATE; this policy covers the two ways to change a pod afterwards.
//
//   - UPDATE of a pod may change container images: the image of keyhook's
//     init container cannot be changed, since the agent runs with the pod's
//     keyhook tokens (another image would be any code with them).
//   - pods/ephemeralcontainers (kubectl debug) may add containers to an
//     injected pod. They are allowed, as kubectl exec is: they run as the
//     pod, which was admitted through keyhook. But a new one may not mount
//     keyhook's token volume (the agent's tokens, never given to the pod's
//     own containers) nor mount the secret volume writable (the app's
//     secrets would be swappable under it).
func PodPolicy(o Options) AdmissionPolicy {
	agent, token, secrets := q(mutate.AgentContainerName), q(mutate.TokenVolumeName), q(mutate.SecretsVolumeName)
	return bound(o.Name+"-pods", admissionregistrationv1.ValidatingAdmissionPolicySpec{
		MatchConstraints: &admissionregistrationv1.MatchResources{
			NamespaceSelector: &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{notOwn(o)}},
			ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Update},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods", "pods/ephemeralcontainers"},
						Scope: ptr.To(admissionregistrationv1.NamespacedScope),
					},
				},
			}},
		},
		Variables: []admissionregistrationv1.Variable{
			// Ephemeral containers cannot be changed or removed once added:
			// only the new ones are judged.
			{Name: "added", Expression: "has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers.filter(e, " +
				"!(has(oldObject.spec.ephemeralContainers) && oldObject.spec.ephemeralContainers.exists(o, o.name == e.name))) : []"},
		},
		Validations: []admissionregistrationv1.Validation{
			{
				Expression: fmt.Sprintf("!has(oldObject.spec.initContainers) || oldObject.spec.initContainers.all(o, o.name != %s || "+
					"(has(object.spec.initContainers) && object.spec.initContainers.exists(c, c.name == o.name && c.image == o.image)))", agent),
				Message: fmt.Sprintf("the image of init container %s cannot be changed: keyhook added it, and it runs with the pod's keyhook tokens; delete the pod to have a new one injected",
					mutate.AgentContainerName),
				Reason: ptr.To(metav1.StatusReasonForbidden),
			},
			{
				Expression: fmt.Sprintf("variables.added.all(e, !has(e.volumeMounts) || e.volumeMounts.all(m, m.name != %s && "+
					"(m.name != %s || (has(m.readOnly) && m.readOnly))))", token, secrets),
				Message: fmt.Sprintf("an ephemeral container may not mount volume %s (the tokens of keyhook's agent) and may mount %s only readOnly",
					mutate.TokenVolumeName, mutate.SecretsVolumeName),
				Reason: ptr.To(metav1.StatusReasonForbidden),
			},
		},
	})
}

// MirrorPodPolicy lets only a node's kubelet create a mirror pod (annotation
// kubernetes.io/config.mirror) bound to that node, in every namespace
// labelled keyhook.dev/injection=enforced (but kube-system and keyhook's
// own, never enforced). The webhook admits such a pod uninjected; without
// this check anyone with pods/create could set the annotation and
// spec.nodeName on a pod of its own and have it admitted uninjected, and a
// virtual-kubelet provider runs every pod bound to it. The webhook denies
// the same pods; this policy holds where keyhook is bypassed or down.
func MirrorPodPolicy(o Options) AdmissionPolicy {
	return bound(o.Name+"-mirror-pods", admissionregistrationv1.ValidatingAdmissionPolicySpec{
		MatchConstraints: &admissionregistrationv1.MatchResources{
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels:      map[string]string{annotations.Injection: annotations.InjectionEnforced},
				MatchExpressions: []metav1.LabelSelectorRequirement{notOwn(o)},
			},
			ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
						Scope: ptr.To(admissionregistrationv1.NamespacedScope),
					},
				},
			}},
		},
		MatchConditions: []admissionregistrationv1.MatchCondition{{
			Name:       "mirror-pod",
			Expression: fmt.Sprintf("has(object.metadata.annotations) && %s in object.metadata.annotations", q(corev1.MirrorPodAnnotationKey)),
		}},
		Validations: []admissionregistrationv1.Validation{{
			Expression: fmt.Sprintf("has(object.spec.nodeName) && object.spec.nodeName != '' && request.userInfo.username == %s + object.spec.nodeName && "+
				"has(request.userInfo.groups) && %s in request.userInfo.groups", q(NodeUserPrefix), q(NodesGroup)),
			MessageExpression: q("mirror pods may only be created by their node's kubelet: namespace ") + " + request.namespace + " +
				q(fmt.Sprintf(" is enforced by keyhook (%s=%s), and a pod with annotation %s is admitted only from user %s<spec.nodeName> in group %s; ",
					annotations.Injection, annotations.InjectionEnforced, corev1.MirrorPodAnnotationKey, NodeUserPrefix, NodesGroup)) +
				" + request.userInfo.username + " + q(" may not create one: remove the annotation"),
			Reason: ptr.To(metav1.StatusReasonForbidden),
		}},
	})
}
