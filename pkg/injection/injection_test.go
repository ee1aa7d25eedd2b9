package injection

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/crd/v1alpha1"
)

func cip(name string, spec v1alpha1.ClusterInjectionPolicySpec) v1alpha1.ClusterInjectionPolicy {
	return v1alpha1.ClusterInjectionPolicy{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: spec}
}

func TestFor(t *testing.T) {
	team := &metav1.LabelSelector{MatchLabels: map[string]string{"team": "a"}}
	policies := []v1alpha1.ClusterInjectionPolicy{
		cip("b-files", v1alpha1.ClusterInjectionPolicySpec{NamespaceSelector: team, Inject: []string{"shared", "db"}, Mode: v1alpha1.InjectionModeFiles}),
		cip("a-enforce", v1alpha1.ClusterInjectionPolicySpec{NamespaceSelector: team, Inject: []string{"audit"}, Enforce: true}),
		cip("other-team", v1alpha1.ClusterInjectionPolicySpec{NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"team": "b"}}, Inject: []string{"nope"}}),
	}
	selected := Inputs{Policies: policies, NamespaceLabels: map[string]string{"team": "a"}}
	for _, tc := range []struct {
		name      string
		in        Inputs
		ann       map[string]string
		wantNames []string
		wantMode  v1alpha1.InjectionMode
		wantOut   bool
		wantErr   string
	}{
		{name: "nothing", in: Inputs{}, ann: nil},
		{name: "annotation only", in: Inputs{}, ann: map[string]string{"keyhook.dev/inject": "db, api"}, wantNames: []string{"db", "api"}},
		{name: "policies only, merged in name order", in: selected, wantNames: []string{"audit", "shared", "db"}, wantMode: v1alpha1.InjectionModeFiles},
		{name: "policies first, then the pod's own, without duplicates", in: selected, ann: map[string]string{"keyhook.dev/inject": "db,api", "keyhook.dev/inject-mode": "secret"},
			wantNames: []string{"audit", "shared", "db", "api"}, wantMode: v1alpha1.InjectionModeSecret},
		{name: "a policy of another namespace does nothing", in: Inputs{Policies: policies, NamespaceLabels: map[string]string{"team": "b"}}, wantNames: []string{"nope"}},
		{name: "opt-out without enforcement", in: Inputs{Policies: policies[2:], NamespaceLabels: map[string]string{"team": "b"}}, ann: map[string]string{"keyhook.dev/inject": "false"}, wantOut: true},
		{name: "opt-out under enforcement is denied", in: selected, ann: map[string]string{"keyhook.dev/inject": "false"}, wantErr: `ClusterInjectionPolicy "a-enforce" enforces injection`},
		{name: "malformed annotation is denied", in: selected, ann: map[string]string{"keyhook.dev/inject": "other/db"}, wantErr: "annotation keyhook.dev/inject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan, _, err := For("ns", tc.in, tc.ann, nil)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantNames, plan.Names(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
			if plan.Request != nil && plan.Request.Mode != tc.wantMode {
				t.Errorf("mode = %q, want %q", plan.Request.Mode, tc.wantMode)
			}
			if plan.OptedOut != tc.wantOut {
				t.Errorf("opted out = %v, want %v", plan.OptedOut, tc.wantOut)
			}
		})
	}
}
