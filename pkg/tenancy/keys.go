package tenancy

import (
	"fmt"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/store"
)

// Default namespace annotations, as kubernetes-external-secrets (and
// kube2iam) spell them, so that clusters moving to keyhook keep their rules.
const (
	// DefaultPermittedKeyAnnotation on a namespace restricts the remote keys
	// its ExternalSecrets may read, with a regular expression.
	DefaultPermittedKeyAnnotation = "externalsecrets.kubernetes-client.io/permitted-key-name"
	// DefaultPermittedRoleAnnotation on a namespace restricts the AWS roles
	// its stores may assume, with a regular expression.
	DefaultPermittedRoleAnnotation = "iam.amazonaws.com/permitted"
)

// Rules are the cluster-wide tenancy settings (flags of the webhook).
type Rules struct {
	// PermittedKeyAnnotation is the namespace annotation read for permitted
	// remote keys; "" turns the check off.
	PermittedKeyAnnotation string
	// PermittedRoleAnnotation is the namespace annotation read for permitted
	// AWS roles; "" turns the check off.
	PermittedRoleAnnotation string
}

// DefaultRules are the rules with the default annotation keys.
func DefaultRules() Rules {
	return Rules{PermittedKeyAnnotation: DefaultPermittedKeyAnnotation, PermittedRoleAnnotation: DefaultPermittedRoleAnnotation}
}

// RemoteKeys lists the remote keys (and find paths) an ExternalSecret reads.
func RemoteKeys(spec *v1alpha1.ExternalSecretSpec) []string {
	var keys []string
	for _, d := range spec.DataFrom {
		switch {
		case d.Extract != nil:
			keys = append(keys, d.Extract.Key)
		case d.Find != nil:
			keys = append(keys, d.Find.Path)
		}
	}
	for _, d := range spec.Data {
		keys = append(keys, d.RemoteRef.Key)
	}
	return keys
}

// CheckKeys returns an error naming the first key of keys that store's
// permittedKeys or the namespace's permitted-key annotation do not permit.
// Regular expressions match whole keys. The error is for the user: it says
// which rule refused the key and who owns it.
func (r Rules) CheckKeys(store *v1alpha1.SecretStoreSpec, storeDesc string, ns *corev1.Namespace, keys []string) error {
	if len(store.PermittedKeys) > 0 {
		res := make([]*regexp.Regexp, 0, len(store.PermittedKeys))
		for _, expr := range store.PermittedKeys {
			re, err := compileWhole(strings.ReplaceAll(expr, "${namespace}", regexp.QuoteMeta(ns.Name)))
			if err != nil {
				return fmt.Errorf("%s has an invalid spec.permittedKeys entry %q (%v); its owner must fix it", storeDesc, expr, err)
			}
			res = append(res, re)
		}
		for _, k := range keys {
			if !matchAny(res, k) {
				return fmt.Errorf("remote key %q is not permitted by spec.permittedKeys of %s for namespace %q (%s); read a permitted key, or ask the store's owner to permit it",
					k, storeDesc, ns.Name, strings.Join(store.PermittedKeys, ", "))
			}
		}
	}
	if r.PermittedKeyAnnotation != "" {
		if expr, ok := ns.Annotations[r.PermittedKeyAnnotation]; ok {
			re, err := compileWhole(expr)
			if err != nil {
				return fmt.Errorf("namespace %q has an invalid %s annotation %q (%v); a cluster admin must fix it", ns.Name, r.PermittedKeyAnnotation, expr, err)
			}
			for _, k := range keys {
				if !re.MatchString(k) {
					return fmt.Errorf("remote key %q is not permitted in namespace %q by its %s annotation %q; read a permitted key, or ask a cluster admin to change the annotation",
						k, ns.Name, r.PermittedKeyAnnotation, expr)
				}
			}
		}
	}
	return nil
}

// CheckRole returns an error when the namespace's permitted-role annotation
// is set and does not match role (an AWS role ARN). A namespace without the
// annotation may use any role its stores name: IAM trust policies still
// decide, as with kube2iam and kubernetes-external-secrets.
func (r Rules) CheckRole(role, what string, ns *corev1.Namespace) error {
	if role == "" || r.PermittedRoleAnnotation == "" {
		return nil
	}
	expr, ok := ns.Annotations[r.PermittedRoleAnnotation]
	if !ok {
		return nil
	}
	re, err := compileWhole(expr)
	if err != nil {
		return fmt.Errorf("namespace %q has an invalid %s annotation %q (%v); a cluster admin must fix it", ns.Name, r.PermittedRoleAnnotation, expr, err)
	}
	if !re.MatchString(role) {
		return fmt.Errorf("%s %q is not permitted in namespace %q by its %s annotation %q; use a permitted role, or ask a cluster admin to change the annotation",
			what, role, ns.Name, r.PermittedRoleAnnotation, expr)
	}
	return nil
}

// StoreRoles lists the cloud roles (AWS) a store would use, with what names
// them; its provider (pkg/store) knows which.
func StoreRoles(spec *v1alpha1.SecretStoreSpec) map[string]string { return store.Roles(spec) }

// ValidateStore checks what the CRD schema cannot: that every regular
// expression of a store compiles, and that its selectors parse.
func ValidateStore(spec *v1alpha1.SecretStoreSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, expr := range spec.PermittedKeys {
		if _, err := compileWhole(strings.ReplaceAll(expr, "${namespace}", "ns")); err != nil {
			errs = append(errs, field.Invalid(path.Child("permittedKeys").Index(i), expr, "not a valid regular expression: "+err.Error()))
		}
	}
	for i, c := range spec.Conditions {
		cp := path.Child("conditions").Index(i)
		for j, expr := range c.NamespaceRegexes {
			if _, err := compileWhole(expr); err != nil {
				errs = append(errs, field.Invalid(cp.Child("namespaceRegexes").Index(j), expr, "not a valid regular expression: "+err.Error()))
			}
		}
		if c.NamespaceSelector != nil {
			if _, err := labelSelector(c.NamespaceSelector); err != nil {
				errs = append(errs, field.Invalid(cp.Child("namespaceSelector"), c.NamespaceSelector, err.Error()))
			}
		}
	}
	return errs
}

func compileWhole(expr string) (*regexp.Regexp, error) {
	return regexp.Compile("^(?:" + expr + ")$")
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}
