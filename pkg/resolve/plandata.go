package resolve

import (
	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
	"github.com/keyhook/keyhook/pkg/plan"
)

// PlanData converts an ExternalSecret's data into the plan's form.
func PlanData(in []v1alpha1.ExternalSecretData) []plan.Data {
	out := make([]plan.Data, 0, len(in))
	for _, d := range in {
		out = append(out, plan.Data{SecretKey: d.SecretKey, Ref: plan.Ref{Key: d.RemoteRef.Key, Property: d.RemoteRef.Property, Version: d.RemoteRef.Version}})
	}
	return out
}

// PlanDataFrom converts an ExternalSecret's dataFrom into the plan's form.
func PlanDataFrom(in []v1alpha1.ExternalSecretDataFrom) []plan.DataFrom {
	var out []plan.DataFrom
	for _, d := range in {
		switch {
		case d.Extract != nil:
			out = append(out, plan.DataFrom{Extract: &plan.Ref{Key: d.Extract.Key, Property: d.Extract.Property, Version: d.Extract.Version}})
		case d.Find != nil:
			f := &plan.Find{Path: d.Find.Path, Tags: d.Find.Tags}
			if d.Find.Name != nil {
				f.Name = d.Find.Name.RegExp
			}
			out = append(out, plan.DataFrom{Find: f})
		}
	}
	return out
}
