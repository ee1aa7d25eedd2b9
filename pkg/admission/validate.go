package admission

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/resolve"
	kstore "github.com/keyhook/keyhook/pkg/store"
	"github.com/keyhook/keyhook/pkg/template"
	"github.com/keyhook/keyhook/pkg/tenancy"
	"github.com/keyhook/keyhook/pkg/webhookconfig"
)

// ValidatePath is the path keyhook's own resources are validated at.
const ValidatePath = webhookconfig.ValidatePath

// Validator rejects keyhook objects that the CRD schema cannot: regular
// expressions that do not compile, selectors that do not parse, an
// ExternalSecret that references a store its namespace may not use or a key
// the store or namespace does not permit, and a store that names an AWS role
// its namespace may not use. The same checks run again at injection and at
// every sync, so a store changed after an ExternalSecret was admitted cannot
// widen what a namespace reads.
type Validator struct {
	Resolver *resolve.Resolver
	Decoder  admission.Decoder
}

var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	var (
		errs     field.ErrorList
		warnings []string
		err      error
	)
	switch req.Kind.Kind {
	case "SecretStore":
		obj := &v1alpha1.SecretStore{}
		if err = v.Decoder.Decode(req, obj); err == nil {
			errs = tenancy.ValidateStore(&obj.Spec, field.NewPath("spec"))
			if len(obj.Spec.Conditions) > 0 {
				warnings = append(warnings, "spec.conditions is ignored on a SecretStore: only its own namespace can use it")
			}
			errs = append(errs, v.validateRoles(ctx, &obj.Spec, obj.Namespace)...)
			errs = append(errs, foreignSecretRefs(&obj.Spec, obj.Namespace)...)
		}
	case "ClusterSecretStore":
		obj := &v1alpha1.ClusterSecretStore{}
		if err = v.Decoder.Decode(req, obj); err == nil {
			errs = tenancy.ValidateStore(&obj.Spec, field.NewPath("spec"))
		}
	case "ExternalSecret":
		obj := &v1alpha1.ExternalSecret{}
		if err = v.Decoder.Decode(req, obj); err == nil {
			var msg string
			errs, msg, err = v.validateExternalSecret(ctx, obj)
			if msg != "" {
				warnings = append(warnings, msg)
			}
		}
	case "ClusterInjectionPolicy":
		obj := &v1alpha1.ClusterInjectionPolicy{}
		if err = v.Decoder.Decode(req, obj); err == nil {
			errs = validatePolicy(obj)
		}
	default:
		return admission.Allowed("not a keyhook kind")
	}
	if err != nil {
		log.FromContext(ctx).Error(err, "validating", "kind", req.Kind.Kind, "name", req.Name)
		return admission.Errored(http.StatusInternalServerError, err)
	}
	if len(errs) > 0 {
		return admission.Denied(fmt.Sprintf("%s %q is invalid: %s", req.Kind.Kind, req.Name, errs.ToAggregate().Error())).WithWarnings(warnings...)
	}
	return admission.Allowed("").WithWarnings(warnings...)
}

func (v *Validator) validateExternalSecret(ctx context.Context, es *v1alpha1.ExternalSecret) (field.ErrorList, string, error) {
	var errs field.ErrorList
	if t := es.Spec.Target.Template; t != nil {
		for k, text := range t.Data {
			if err := template.Parse(k, text); err != nil {
				errs = append(errs, field.Invalid(field.NewPath("spec", "target", "template", "data").Key(k), "(template)", "does not parse: "+err.Error()))
			}
		}
	}
	for i, d := range es.Spec.DataFrom {
		if d.Find != nil && d.Find.Name != nil {
			if _, err := regexp.Compile(d.Find.Name.RegExp); err != nil {
				errs = append(errs, field.Invalid(field.NewPath("spec", "dataFrom").Index(i).Child("find", "name", "regexp"), d.Find.Name.RegExp, "not a regular expression: "+err.Error()))
			}
		}
	}
	// A store created after its ExternalSecret is normal with kubectl apply
	// or GitOps: let it through with a warning, and check at sync.
	ref := es.Spec.SecretStoreRef
	var store client.Object = &v1alpha1.SecretStore{}
	key := client.ObjectKey{Namespace: es.Namespace, Name: ref.Name}
	if ref.Kind == v1alpha1.SecretStoreKindCluster {
		store, key = &v1alpha1.ClusterSecretStore{}, client.ObjectKey{Name: ref.Name}
	}
	if err := v.Resolver.Reader.Get(ctx, key, store); err != nil {
		if apierrors.IsNotFound(err) {
			kind := ref.Kind
			if kind == "" {
				kind = v1alpha1.SecretStoreKindNamespaced
			}
			return errs, fmt.Sprintf("%s %q does not exist (yet); the ExternalSecret will not sync until it does", kind, ref.Name), nil
		}
		return nil, "", err
	}
	if _, err := v.Resolver.ForExternalSecret(ctx, es); err != nil {
		if !resolve.IsDenied(err) {
			return nil, "", err
		}
		errs = append(errs, field.Forbidden(field.NewPath("spec"), err.Error()))
	}
	var spec *v1alpha1.SecretStoreSpec
	switch st := store.(type) {
	case *v1alpha1.SecretStore:
		spec = &st.Spec
	case *v1alpha1.ClusterSecretStore:
		spec = &st.Spec
	}
	// What the store's provider checks of its keys and versions (the CRD
	// admits any version any provider has), then what it can find by.
	if p := kstore.For(spec); p != nil {
		errs = append(errs, p.ValidateExternalSecret(spec, es)...)
	}
	errs = append(errs, validateFind(spec, es)...)
	return errs, "", nil
}

// validateFind checks each dataFrom.find against what the store's provider
// declares it can find by: a find the sync and the agent would both fail is
// refused here, with the reason.
func validateFind(store *v1alpha1.SecretStoreSpec, es *v1alpha1.ExternalSecret) field.ErrorList {
	caps := kstore.Capabilities(store).Find
	provider := kstore.ProviderName(store)
	var errs field.ErrorList
	for i, d := range es.Spec.DataFrom {
		f := d.Find
		if f == nil {
			continue
		}
		path := field.NewPath("spec", "dataFrom").Index(i).Child("find")
		switch {
		case !caps.Path:
			errs = append(errs, field.Forbidden(path, fmt.Sprintf("the store's provider (%s) cannot find secrets by name; list them in data or dataFrom.extract", provider)))
		case f.Name != nil && !caps.Name:
			errs = append(errs, field.Forbidden(path.Child("name"), fmt.Sprintf("the store's provider (%s) finds by path prefix only; remove name and narrow the path", provider)))
		case len(f.Tags) > 0 && !caps.Tags:
			errs = append(errs, field.Forbidden(path.Child("tags"), fmt.Sprintf("the store's provider (%s) cannot find by tags; remove them", provider)))
		}
	}
	return errs
}

// validateRoles denies a SecretStore that names an AWS role its namespace's
// permitted-role annotation does not permit.
func (v *Validator) validateRoles(ctx context.Context, spec *v1alpha1.SecretStoreSpec, ns string) field.ErrorList {
	roles := tenancy.StoreRoles(spec)
	if len(roles) == 0 {
		return nil
	}
	namespace := &corev1.Namespace{}
	if err := v.Resolver.Reader.Get(ctx, client.ObjectKey{Name: ns}, namespace); err != nil {
		return nil // checked again at use
	}
	var errs field.ErrorList
	for path, role := range roles {
		if err := v.Resolver.Rules.CheckRole(role, path, namespace); err != nil {
			errs = append(errs, field.Forbidden(field.NewPath(strings.Split(path, ".")[0], strings.Split(path, ".")[1:]...), err.Error()))
		}
	}
	return errs
}

func validatePolicy(p *v1alpha1.ClusterInjectionPolicy) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	for name, sel := range map[string]*metav1.LabelSelector{"namespaceSelector": p.Spec.NamespaceSelector, "podSelector": p.Spec.PodSelector} {
		if _, err := metav1.LabelSelectorAsSelector(sel); err != nil {
			errs = append(errs, field.Invalid(spec.Child(name), sel, err.Error()))
		}
	}
	for i, name := range p.Spec.Inject {
		if strings.Contains(name, "/") {
			errs = append(errs, field.Invalid(spec.Child("inject").Index(i), name, "a policy injects ExternalSecrets of each pod's own namespace: give a name without a namespace"))
			continue
		}
		for _, msg := range validation.IsDNS1123Subdomain(name) {
			errs = append(errs, field.Invalid(spec.Child("inject").Index(i), name, msg))
		}
	}
	if p.Spec.Enforce && len(p.Spec.Inject) == 0 {
		errs = append(errs, field.Required(spec.Child("inject"), "an enforcing policy must inject at least one ExternalSecret"))
	}
	return errs
}

// secretKeySelectorType is the type of every reference a store makes to a
// key of a Secret.
var secretKeySelectorType = reflect.TypeFor[v1alpha1.SecretKeySelector]()

// foreignSecretRefs denies every Secret reference of a namespaced
// SecretStore (tokenSecretRef, appRole.secretRef, the AWS and Google key
// references: any SecretKeySelector in the spec, found by walking it, so a
// field added later is covered too) whose namespace is not the store's own.
// Neither injected pods nor the sync would read it there — a pod can only
// reference Secrets of its namespace — so accepting it would silently read
// another Secret than the one named.
func foreignSecretRefs(spec *v1alpha1.SecretStoreSpec, ns string) field.ErrorList {
	var errs field.ErrorList
	var walk func(v reflect.Value, path *field.Path)
	walk = func(v reflect.Value, path *field.Path) {
		switch v.Kind() {
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem(), path)
			}
		case reflect.Slice:
			for i := range v.Len() {
				walk(v.Index(i), path.Index(i))
			}
		case reflect.Struct:
			if v.Type() == secretKeySelectorType {
				ref := v.Interface().(v1alpha1.SecretKeySelector)
				if ref.Namespace != "" && ref.Namespace != ns {
					errs = append(errs, field.Forbidden(path.Child("namespace"), fmt.Sprintf(
						"namespace %q: a namespaced SecretStore can only reference Secrets in its own namespace %q; remove the namespace, or use a ClusterSecretStore to read Secret %s/%s",
						ref.Namespace, ns, ref.Namespace, ref.Name)))
				}
				return
			}
			for i := range v.NumField() {
				f := v.Type().Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				if !f.IsExported() || name == "-" {
					continue
				}
				if name == "" {
					name = f.Name
				}
				walk(v.Field(i), path.Child(name))
			}
		}
	}
	walk(reflect.ValueOf(spec).Elem(), field.NewPath("spec"))
	return errs
}
