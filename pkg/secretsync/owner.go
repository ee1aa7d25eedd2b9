package secretsync

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keyhook/keyhook/pkg/annotations"
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

// ReasonOwnedByOther is the reason of a Ready=False condition of an
// ExternalSecret whose target Secret belongs to someone else: another
// ExternalSecret, or whoever made a Secret keyhook did not create. It is the
// name External Secrets Operator's users know.
const ReasonOwnedByOther = "SecretOwnedByOther"

// SecretOwner returns the ExternalSecret that owns a Secret keyhook wrote:
// its controller owner reference (creationPolicy Owner), else the
// keyhook.dev/external-secret annotation (Orphan), with an empty UID. It
// returns "" for a Secret that records no owner.
func SecretOwner(s metav1.Object) (string, types.UID) {
	if ref := metav1.GetControllerOfNoCopy(s); ref != nil && ref.Kind == "ExternalSecret" && isKeyhookGroup(ref.APIVersion) {
		return ref.Name, ref.UID
	}
	return s.GetAnnotations()[annotations.ExternalSecretName], ""
}

func isKeyhookGroup(apiVersion string) bool {
	gv, err := schema.ParseGroupVersion(apiVersion)
	return err == nil && gv.Group == v1alpha1.GroupVersion.Group
}

// ClaimTarget decides whether es may write its target Secret, which
// currently is existing (nil when there is none). owner is the live
// ExternalSecret that existing names as its owner (see SecretOwner), nil
// when that one no longer exists. It returns "" when es may write, else a
// one-line message for the Ready condition that names the owner.
//
// The first writer keeps the Secret for as long as it wants it: two
// ExternalSecrets taking turns would flip the data at every sync, and every
// flip could roll the workloads that use it. es takes over when the owner is
// gone (deleted, or being deleted), no longer targets the Secret, or writes
// none (creationPolicy None). keyhook never takes over a Secret it did not
// create, except to merge keys into it (creationPolicy Merge, whose purpose
// that is); a Merge into a Secret another ExternalSecret owns is refused,
// since the owner's next sync would drop the merged keys.
func ClaimTarget(es *v1alpha1.ExternalSecret, existing metav1.Object, owner *v1alpha1.ExternalSecret) string {
	if existing == nil || creationPolicy(es) == v1alpha1.CreationPolicyNone {
		return ""
	}
	if existing.GetLabels()[annotations.Managed] != "true" {
		if creationPolicy(es) == v1alpha1.CreationPolicyMerge {
			return ""
		}
		by := "no owner"
		if ref := metav1.GetControllerOfNoCopy(existing); ref != nil {
			by = fmt.Sprintf("owned by %s %q", ref.Kind, ref.Name)
		}
		return fmt.Sprintf("Secret %q exists and was not made by keyhook (%s); keyhook does not take over a Secret it did not create: "+
			"delete it, name another target, or use creationPolicy Merge", existing.GetName(), by)
	}
	name, uid := SecretOwner(existing)
	switch {
	case name == "" || name == es.Name:
		// Ours (an ExternalSecret deleted and made again under its name is
		// still the same one to its users), or nobody's.
		return ""
	case owner == nil || owner.Name != name || !owner.DeletionTimestamp.IsZero():
		return ""
	case uid != "" && owner.UID != uid:
		// The owner of that name was deleted; this one is a newcomer.
		return ""
	case owner.TargetName() != existing.GetName() || creationPolicy(owner) == v1alpha1.CreationPolicyNone:
		return ""
	}
	return fmt.Sprintf("Secret %q is owned by ExternalSecret %q, which targets it too; two ExternalSecrets never write one Secret: "+
		"name another target (spec.target.name), or delete ExternalSecret %q and this one takes the Secret over", existing.GetName(), name, name)
}
