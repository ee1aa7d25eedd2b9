// Package webhookconfig builds keyhook's webhook registrations. The manifests
// (make manifests) and the tests use the same code, so what users install is
// what the tests exercise.
//
// Pods are routed by namespace to one of three entries, chosen by the
// keyhook.dev/injection label that keyhook keeps on namespaces selected by a
// ClusterInjectionPolicy:
//
//   - enforced.pods.keyhook.dev, failurePolicy Fail, namespaces labelled
//     "enforced": every pod is sent, to EnforcedPodPath; while keyhook is
//     unreachable no pod is admitted there, rather than started without its
//     secrets. Its own path tells the webhook that the API server saw the
//     namespace enforced, so a replica whose cache has not yet seen the
//     enforcing policy denies (retryably) instead of admitting uninjected.
//   - default.pods.keyhook.dev, failurePolicy Ignore, namespaces labelled
//     "default": every pod is sent, so policy defaults apply; keyhook down
//     means pods start without injection (counted by the apiserver in
//     apiserver_admission_webhook_fail_open_count).
//   - pods.keyhook.dev, failurePolicy Ignore, every other namespace: only
//     pods that carry keyhook.dev/inject are sent at all (matchConditions).
//
// None is called for kube-system or keyhook's own namespace, so keyhook can
// never block its own restart. They exclude by namespace name only
// (kubernetes.io/metadata.name, which the API server sets and nobody can
// change), never by a pod label: a label is the tenant's to set, and a
// label-based exclusion would let any pod step around enforcement.
//
// The keyhook.dev/injection label the entries select on is itself guarded
// by a ValidatingAdmissionPolicy (NamespaceLabelPolicy), and the parts
// keyhook adds to a pod by another (PodPolicy): both run inside the API
// server, so they hold while keyhook is down.
//
// The registration is written twice (hack/webhookgen), from the same code
// so the two cannot drift: manifests/self-managed without a caBundle, which
// keyhook writes itself (--tls-mode=self-managed), and manifests/certmanager,
// annotated so that cert-manager's cainjector fills the caBundle in.
package webhookconfig

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/keyhook/keyhook/pkg/annotations"
)

// Paths served by the webhook binary.
const (
	// PodPath is the pod mutation of the entries that fail open.
	PodPath = "/mutate-v1-pod"
	// EnforcedPodPath is the pod mutation of enforced.pods.keyhook.dev,
	// the entry the API server calls for namespaces it sees labelled
	// keyhook.dev/injection=enforced: the same mutation, which then also
	// knows that the namespace is enforced whatever its own cache says.
	EnforcedPodPath = "/mutate-v1-pod-enforced"
	ValidatePath    = "/validate-keyhook-dev"
)

// Options of the registration.
type Options struct {
	// Name of both configurations.
	Name string
	// ClientConfig returns how the apiserver reaches path.
	ClientConfig func(path string) admissionregistrationv1.WebhookClientConfig
	// OwnNamespace is keyhook's namespace, never sent to the webhook.
	OwnNamespace string
	// NamespaceLabeler is the username of the identity that keeps the
	// keyhook.dev/injection label of namespaces (pkg/policy's
	// NamespaceLabeler): the only one NamespaceLabelPolicy lets add, change
	// or remove it. Default: ServiceAccountUsername(OwnNamespace,
	// NamespaceLabelerServiceAccount).
	NamespaceLabeler string
	// TimeoutSeconds of every entry: short, so a slow keyhook fails fast.
	TimeoutSeconds int32
	// Annotations of both configurations (cert-manager's inject-ca-from).
	Annotations map[string]string
}

// InjectCAFrom is cert-manager's cainjector annotation: its value,
// namespace/name of a cert-manager Certificate, names the Certificate whose
// CA (ca.crt of its Secret) the cainjector writes into the caBundle of every
// entry of the annotated configuration.
const InjectCAFrom = "cert-manager.io/inject-ca-from"

// ServingCertificate is the name of the cert-manager Certificate, in keyhook's
// namespace, that manifests/certmanager issues for the webhook's Service.
const ServingCertificate = "keyhook-webhook"

// Defaults are the options of manifests/self-managed: no caBundle and no
// annotation, for installs whose TLS is not cert-manager's.
func Defaults() Options {
	return Options{
		Name: "keyhook",
		ClientConfig: func(path string) admissionregistrationv1.WebhookClientConfig {
			return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
				Name: "keyhook-webhook", Namespace: "keyhook-system", Path: ptr.To(path),
			}}
		},
		OwnNamespace:     "keyhook-system",
		NamespaceLabeler: ServiceAccountUsername("keyhook-system", NamespaceLabelerServiceAccount),
		TimeoutSeconds:   5,
	}
}

// CertManager are the options of manifests/certmanager: Defaults, annotated
// so that cert-manager's cainjector keeps the caBundle of every entry equal
// to the CA of ServingCertificate.
func CertManager() Options {
	o := Defaults()
	o.Annotations = map[string]string{InjectCAFrom: o.OwnNamespace + "/" + ServingCertificate}
	return o
}

// notOwn leaves out the namespaces keyhook must never wait on:
// kube-system and its own. kubernetes.io/metadata.name is set by the API
// server to the namespace's name and cannot be changed.
func notOwn(o Options) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: []string{metav1.NamespaceSystem, o.OwnNamespace}}
}

// Mutating is the pod-injection registration.
func Mutating(o Options) *admissionregistrationv1.MutatingWebhookConfiguration {
	entry := func(name string, policy admissionregistrationv1.FailurePolicyType, path string, ns metav1.LabelSelectorRequirement) admissionregistrationv1.MutatingWebhook {
		return admissionregistrationv1.MutatingWebhook{
			Name:                    name,
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            o.ClientConfig(path),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"},
					Scope: ptr.To(admissionregistrationv1.NamespacedScope),
				},
			}},
			FailurePolicy:      ptr.To(policy),
			SideEffects:        ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:     ptr.To(o.TimeoutSeconds),
			ReinvocationPolicy: ptr.To(admissionregistrationv1.IfNeededReinvocationPolicy),
			NamespaceSelector:  &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{notOwn(o), ns}},
			// No objectSelector: pod labels are the tenant's, so an
			// exclusion by pod label would be an opt-out of enforcement.
		}
	}
	enforced := entry("enforced.pods.keyhook.dev", admissionregistrationv1.Fail, EnforcedPodPath,
		metav1.LabelSelectorRequirement{Key: annotations.Injection, Operator: metav1.LabelSelectorOpIn, Values: []string{annotations.InjectionEnforced}})
	defaulted := entry("default.pods.keyhook.dev", admissionregistrationv1.Ignore, PodPath,
		metav1.LabelSelectorRequirement{Key: annotations.Injection, Operator: metav1.LabelSelectorOpIn, Values: []string{annotations.InjectionDefault}})
	optIn := entry("pods.keyhook.dev", admissionregistrationv1.Ignore, PodPath,
		metav1.LabelSelectorRequirement{Key: annotations.Injection, Operator: metav1.LabelSelectorOpDoesNotExist})
	optIn.MatchConditions = []admissionregistrationv1.MatchCondition{{
		Name:       "asks-for-injection",
		Expression: "has(object.metadata.annotations) && '" + annotations.Inject + "' in object.metadata.annotations",
	}}
	return &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Annotations: o.Annotations},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{enforced, defaulted, optIn},
	}
}

// Validating is the registration that validates keyhook's own resources.
// It fails open: validation is there to tell users early, while every
// tenancy rule it checks is checked again where it matters, at injection
// and at every sync. So a keyhook outage never blocks a GitOps apply of
// ExternalSecrets, and nothing a namespace may not read gets through.
func Validating(o Options) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Annotations: o.Annotations},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "validate.keyhook.dev",
			AdmissionReviewVersions: []string{"v1"},
			ClientConfig:            o.ClientConfig(ValidatePath),
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{"keyhook.dev"}, APIVersions: []string{"v1alpha1"},
					Resources: []string{"externalsecrets", "secretstores", "clustersecretstores", "clusterinjectionpolicies"},
					Scope:     ptr.To(admissionregistrationv1.AllScopes),
				},
			}},
			FailurePolicy:  ptr.To(admissionregistrationv1.Ignore),
			SideEffects:    ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds: ptr.To(o.TimeoutSeconds),
		}},
	}
}
