package framework

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

// KeyhookCRDs are the CRDs keyhook's chart installs from crds/ and keeps on
// uninstall: deleting them would delete every ExternalSecret, store and
// policy of the cluster's users.
var KeyhookCRDs = []string{"clusterinjectionpolicies.keyhook.dev", "clustersecretstores.keyhook.dev", "externalsecrets.keyhook.dev", "secretstores.keyhook.dev"}

// Leftovers lists, as "Kind namespace/name (why)", every object of the
// cluster that is keyhook's, whatever its kind (every listable resource the
// API server serves is listed): one labelled app.kubernetes.io/name=keyhook,
// one in keyhook's namespace ns, the namespace itself, a cluster-wide object
// named keyhook or keyhook-*, keyhook's TLS Secret or leader-election Lease
// anywhere, and a namespace carrying the keyhook.dev/injection label keyhook's
// controller writes. keyhook's CRDs, kept on purpose, are not listed; nor are
// the custom resources users made (ExternalSecrets, stores, policies), nor
// events about their objects elsewhere, which expire. Objects being deleted
// are listed: they are not gone yet. ignore are "Kind /name" keys of
// objects the test bed itself named after keyhook (a node, say).
func Leftovers(ctx context.Context, cfg *rest.Config, ns string, ignore ...string) ([]string, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	lists, err := dc.ServerPreferredResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			return nil, err
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).List(ctx, metav1.ListOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					continue
				}
				return nil, fmt.Errorf("list %s: %w", r.Name, err)
			}
			for _, o := range items.Items {
				name, namespace := o.GetName(), o.GetNamespace()
				key := r.Kind + " " + namespace + "/" + name
				why := ""
				switch {
				case slices.Contains(ignore, key):
				case r.Kind == "CustomResourceDefinition" && slices.Contains(KeyhookCRDs, name):
					// kept on purpose
				case gv.Group == "keyhook.dev":
					// the users' own objects, kept with the CRDs
				case o.GetLabels()["app.kubernetes.io/name"] == "keyhook":
					why = "labelled app.kubernetes.io/name=keyhook"
				case namespace == ns:
					why = "in keyhook's namespace"
				case r.Kind == "Namespace" && name == ns:
					why = "keyhook's namespace"
				case r.Kind == "Namespace" && hasKey(o.GetLabels(), "keyhook.dev/injection"):
					why = "labelled keyhook.dev/injection=" + o.GetLabels()["keyhook.dev/injection"]
				case !r.Namespaced && r.Kind != "Namespace" && (name == "keyhook" || strings.HasPrefix(name, "keyhook-")):
					why = "cluster-wide, named after keyhook"
				case r.Kind == "Secret" && name == "keyhook-webhook-tls", r.Kind == "Lease" && name == "keyhook.dev":
					why = "keyhook's runtime state"
				}
				if why != "" {
					if o.GetDeletionTimestamp() != nil {
						why += ", being deleted"
					}
					out = append(out, key+" ("+why+")")
				}
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func hasKey(m map[string]string, k string) bool {
	_, ok := m[k]
	return ok
}
