package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/keyhook/keyhook/tests/framework"
)

// A compatCase is one row of README's compatibility table: a workload with
// Reloader's (or keyhook's) annotations, the ConfigMaps and Secrets it uses,
// one change, and how many rollouts that change must cause.
type compatCase struct {
	name string
	kind string // Deployment (default), StatefulSet, DaemonSet, CronJob, Rollout
	// ann are the workload's annotations, tmplAnn its pod template's.
	ann, tmplAnn map[string]string
	// secrets and configMaps are created in the namespace, named
	// <case>-<key>, with these annotations.
	secrets, configMaps map[string]map[string]string
	// pod uses them; names are the keys above, prefixed by the test.
	pod func(prefix func(string) string) corev1.PodSpec
	// change is the key of the Secret or ConfigMap whose data changes.
	changeSecret, changeConfigMap string
	rollouts                      int
	// check, if set, checks the workload after the change.
	check func(ctx context.Context, t *testing.T, ns, name string)
}

func envFrom(secret, configMap string) func(func(string) string) corev1.PodSpec {
	return func(p func(string) string) corev1.PodSpec {
		c := corev1.Container{Name: "app", Image: "example.com/app:1"}
		if secret != "" {
			c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: p(secret)}}})
		}
		if configMap != "" {
			c.EnvFrom = append(c.EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: p(configMap)}}})
		}
		return corev1.PodSpec{Containers: []corev1.Container{c}}
	}
}

func app(spec corev1.PodSpec) corev1.PodSpec {
	if len(spec.Containers) == 0 {
		spec.Containers = []corev1.Container{{Name: "app", Image: "example.com/app:1"}}
	}
	return spec
}

func compatCases() []compatCase {
	none := map[string]string{}
	on := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	auto := on("reloader.stakater.com/auto", "true")
	return []compatCase{
		{name: "auto-configmap-envfrom", ann: auto, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 1},
		{name: "auto-secret-volume", ann: auto, secrets: map[string]map[string]string{"s": none}, changeSecret: "s", rollouts: 1,
			pod: func(p func(string) string) corev1.PodSpec {
				return app(corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: p("s")}}}}})
			}},
		{name: "auto-configmap-volume", ann: auto, configMaps: map[string]map[string]string{"cm": none}, changeConfigMap: "cm", rollouts: 1,
			pod: func(p func(string) string) corev1.PodSpec {
				return app(corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: p("cm")}}}}}})
			}},
		{name: "auto-projected-volume", ann: auto, secrets: map[string]map[string]string{"s": none}, configMaps: map[string]map[string]string{"cm": none}, changeConfigMap: "cm", rollouts: 1,
			pod: func(p func(string) string) corev1.PodSpec {
				return app(corev1.PodSpec{Volumes: []corev1.Volume{{Name: "v", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: []corev1.VolumeProjection{
					{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: p("s")}}},
					{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: p("cm")}}},
				}}}}}})
			}},
		{name: "auto-init-container-env", ann: auto, secrets: map[string]map[string]string{"s": none}, changeSecret: "s", rollouts: 1,
			pod: func(p func(string) string) corev1.PodSpec {
				return app(corev1.PodSpec{InitContainers: []corev1.Container{{Name: "init", Image: "example.com/init:1", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{
					SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: p("s")}, Key: "k"}}}}}}})
			}},
		{name: "auto-on-pod-template", tmplAnn: auto, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 1},
		{name: "auto-false", ann: on("reloader.stakater.com/auto", "false"), configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 0},
		{name: "no-annotation", configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 0},
		{name: "secret-auto-secret", ann: on("secret.reloader.stakater.com/auto", "true"), secrets: map[string]map[string]string{"s": none}, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("s", "cm"), changeSecret: "s", rollouts: 1},
		{name: "secret-auto-configmap", ann: on("secret.reloader.stakater.com/auto", "true"), secrets: map[string]map[string]string{"s": none}, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("s", "cm"), changeConfigMap: "cm", rollouts: 0},
		{name: "configmap-auto-configmap", ann: on("configmap.reloader.stakater.com/auto", "true"), secrets: map[string]map[string]string{"s": none}, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("s", "cm"), changeConfigMap: "cm", rollouts: 1},
		{name: "configmap-auto-secret", ann: on("configmap.reloader.stakater.com/auto", "true"), secrets: map[string]map[string]string{"s": none}, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("s", "cm"), changeSecret: "s", rollouts: 0},
		{name: "secret-reload-unreferenced", ann: on("secret.reloader.stakater.com/reload", "{{prefix}}s"), secrets: map[string]map[string]string{"s": none}, pod: envFrom("", ""), changeSecret: "s", rollouts: 1},
		{name: "secret-reload-pattern", ann: on("secret.reloader.stakater.com/reload", "{{prefix}}s-.*"), secrets: map[string]map[string]string{"s-1": none}, pod: envFrom("", ""), changeSecret: "s-1", rollouts: 1},
		{name: "configmap-reload", ann: on("configmap.reloader.stakater.com/reload", "{{prefix}}cm"), configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 1},
		{name: "configmap-reload-other", ann: on("configmap.reloader.stakater.com/reload", "{{prefix}}cm"), configMaps: map[string]map[string]string{"cm": none, "other": none}, pod: envFrom("", "other"), changeConfigMap: "other", rollouts: 0},
		{name: "search-match", ann: on("reloader.stakater.com/search", "true"), secrets: map[string]map[string]string{"s": on("reloader.stakater.com/match", "true")}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1},
		{name: "search-no-match", ann: on("reloader.stakater.com/search", "true"), secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 0},
		{name: "ignore", ann: auto, secrets: map[string]map[string]string{"s": on("reloader.stakater.com/ignore", "true")}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 0},
		{name: "exclude", ann: on("reloader.stakater.com/auto", "true", "secrets.exclude.reloader.stakater.com/reload", "{{prefix}}s"), secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 0},
		{name: "exclude-configmap", ann: on("reloader.stakater.com/auto", "true", "configmaps.exclude.reloader.stakater.com/reload", "{{prefix}}cm"), configMaps: map[string]map[string]string{"cm": none, "other": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 0},
		{name: "exclude-configmap-other", ann: on("reloader.stakater.com/auto", "true", "configmaps.exclude.reloader.stakater.com/reload", "{{prefix}}cm"), configMaps: map[string]map[string]string{"cm": none, "other": none},
			pod: func(p func(string) string) corev1.PodSpec {
				spec := envFrom("", "cm")(p)
				spec.Containers[0].EnvFrom = append(spec.Containers[0].EnvFrom, corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: p("other")}}})
				return spec
			}, changeConfigMap: "other", rollouts: 1},
		{name: "keyhook-auto-configmap", ann: on("keyhook.dev/rollout", "auto"), configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 1},
		{name: "strategy-env-vars", ann: on("reloader.stakater.com/auto", "true", "keyhook.dev/rollout-strategy", "env-vars"), secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1,
			check: func(ctx context.Context, t *testing.T, ns, name string) {
				d := &appsv1.Deployment{}
				if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d); err != nil {
					t.Fatal(err)
				}
				env := d.Spec.Template.Spec.Containers[0].Env
				if !slices.ContainsFunc(env, func(e corev1.EnvVar) bool { return e.Name == "KEYHOOK_SECRET_HASH" && len(e.Value) == 64 }) {
					t.Errorf("env-vars strategy: container env %v has no KEYHOOK_SECRET_HASH", env)
				}
				if _, ok := d.Spec.Template.Annotations["keyhook.dev/secret-hash"]; ok {
					t.Errorf("env-vars strategy also set the pod template annotation")
				}
			}},
		{name: "pause-period", ann: on("reloader.stakater.com/auto", "true", "deployment.reloader.stakater.com/pause-period", "3s"), secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1,
			check: func(ctx context.Context, t *testing.T, ns, name string) {
				d := &appsv1.Deployment{}
				err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
					err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, d)
					return err == nil && !d.Spec.Paused && d.Annotations["deployment.reloader.stakater.com/paused-at"] == "", err
				})
				if err != nil {
					t.Errorf("the Deployment was not resumed after its pause period: paused %v, annotations %v", d.Spec.Paused, d.Annotations)
				}
				if !hasEvent(ctx, t, ns, name, "RolloutResumed") {
					t.Errorf("no RolloutResumed event: the Deployment was never paused")
				}
			}},
		{name: "statefulset", kind: "StatefulSet", ann: auto, configMaps: map[string]map[string]string{"cm": none}, pod: envFrom("", "cm"), changeConfigMap: "cm", rollouts: 1},
		{name: "daemonset", kind: "DaemonSet", ann: auto, secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1},
		{name: "cronjob", kind: "CronJob", ann: auto, secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1,
			check: checkNextJob},
		{name: "argo-rollout", kind: "Rollout", ann: auto, secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1,
			check: func(ctx context.Context, t *testing.T, ns, name string) {
				u := argoRollout(ctx, t, ns, name)
				if h, _, _ := unstructured.NestedString(u.Object, "spec", "template", "metadata", "annotations", "keyhook.dev/secret-hash"); len(h) != 64 {
					t.Errorf("the Rollout's pod template has no keyhook.dev/secret-hash: %v", u.Object["spec"])
				}
			}},
		{name: "argo-rollout-restart", kind: "Rollout", ann: on("reloader.stakater.com/auto", "true", "reloader.stakater.com/rollout-strategy", "restart"), secrets: map[string]map[string]string{"s": none}, pod: envFrom("s", ""), changeSecret: "s", rollouts: 1,
			check: func(ctx context.Context, t *testing.T, ns, name string) {
				u := argoRollout(ctx, t, ns, name)
				if at, _, _ := unstructured.NestedString(u.Object, "spec", "restartAt"); at == "" {
					t.Errorf("the Rollout has no spec.restartAt: %v", u.Object["spec"])
				}
			}},
	}
}

// TestReloaderCompatibility creates, for every row of README's compatibility
// table, a workload annotated as a Reloader user annotates it (nothing
// keyhook-managed in sight), changes one Secret or ConfigMap it uses or
// names, and counts the rollouts: new ReplicaSets (Deployment),
// ControllerRevisions (StatefulSet, DaemonSet) or spec changes (CronJob,
// Argo Rollout). It then checks that README's table lists exactly these
// cases, each with the outcome that ran.
func TestReloaderCompatibility(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	installArgoRolloutsCRD(ctx, t)
	ns, err := cluster.Namespace(ctx, "reloader", nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := compatCases()
	for _, c := range cases {
		createCase(ctx, t, ns, c)
	}
	// keyhook records what each follows before anything changes.
	for _, c := range cases {
		if c.rollouts > 0 {
			waitAnnotation(ctx, t, ns, c, "keyhook.dev/secret-versions")
		}
		_ = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
			return revisions(ctx, t, c.kind, ns, c.name) >= 1, nil
		})
		if got := revisions(ctx, t, c.kind, ns, c.name); got != 1 {
			t.Fatalf("%s: %d revisions before any change, want 1", c.name, got)
		}
	}
	for _, c := range cases {
		p := func(s string) string { return c.name + "-" + s }
		if c.changeSecret != "" {
			s := &corev1.Secret{}
			if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: p(c.changeSecret)}, s); err != nil {
				t.Fatal(err)
			}
			s.Data = map[string][]byte{"k": []byte(secretValue(t, "changed"))}
			if err := cluster.Client.Update(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		if c.changeConfigMap != "" {
			cm := &corev1.ConfigMap{}
			if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: p(c.changeConfigMap)}, cm); err != nil {
				t.Fatal(err)
			}
			cm.Data = map[string]string{"k": "changed"}
			if err := cluster.Client.Update(ctx, cm); err != nil {
				t.Fatal(err)
			}
		}
	}
	outcome := map[string]string{}
	for _, c := range cases {
		if c.rollouts == 0 {
			continue
		}
		err := framework.WaitFor(ctx, 200*time.Millisecond, func() (bool, error) {
			return revisions(ctx, t, c.kind, ns, c.name) >= 1+c.rollouts, nil
		})
		if err != nil {
			t.Errorf("%s: %d revisions, want %d", c.name, revisions(ctx, t, c.kind, ns, c.name), 1+c.rollouts)
		}
	}
	// Nothing more once the storm guard's window has passed.
	time.Sleep(rolloutDebounce + 3*time.Second)
	for _, c := range cases {
		passed := t.Run(c.name, func(t *testing.T) {
			if got := revisions(ctx, t, c.kind, ns, c.name) - 1; got != c.rollouts {
				t.Fatalf("%d rollouts, want %d", got, c.rollouts)
			}
			if c.check != nil {
				c.check(ctx, t, ns, c.name)
			}
		})
		if passed {
			outcome[c.name] = map[bool]string{true: "rolls once", false: "does not roll"}[c.rollouts > 0]
		}
	}
	checkCompatibilityTable(t, cases, outcome)
}

// checkCompatibilityTable reads README's compatibility table: every case is
// a row and every row a case, with the outcome the case had.
func checkCompatibilityTable(t *testing.T, cases []compatCase, outcome map[string]string) {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\|.*\\| (rolls once|does not roll) \\| `([a-z0-9-]+)` \\|$")
	rows := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := row.FindStringSubmatch(sc.Text()); m != nil {
			rows[m[2]] = m[1]
		}
	}
	for _, c := range cases {
		got, ran := outcome[c.name]
		switch readme, listed := rows[c.name]; {
		case !listed:
			t.Errorf("README's compatibility table has no row for case %s", c.name)
		case !ran:
			t.Errorf("README's row %s: the case failed", c.name)
		case readme != got:
			t.Errorf("README's row %s says %q, the case %q", c.name, readme, got)
		}
	}
	for name := range rows {
		if !slices.ContainsFunc(cases, func(c compatCase) bool { return c.name == name }) {
			t.Errorf("README's compatibility table has a row %s that no case tests", name)
		}
	}
}

func createCase(ctx context.Context, t *testing.T, ns string, c compatCase) {
	t.Helper()
	p := func(s string) string { return c.name + "-" + s }
	for name, ann := range c.secrets {
		if err := cluster.Client.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p(name), Annotations: ann}, Data: map[string][]byte{"k": []byte("v1")}}); err != nil {
			t.Fatal(err)
		}
	}
	for name, ann := range c.configMaps {
		if err := cluster.Client.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: p(name), Annotations: ann}, Data: map[string]string{"k": "v1"}}); err != nil {
			t.Fatal(err)
		}
	}
	expand := func(m map[string]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			out[k] = strings.ReplaceAll(v, "{{prefix}}", c.name+"-")
		}
		return out
	}
	labels := map[string]string{"app": c.name}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: expand(c.tmplAnn)}, Spec: c.pod(p)}
	meta := metav1.ObjectMeta{Namespace: ns, Name: c.name, Annotations: expand(c.ann)}
	sel := &metav1.LabelSelector{MatchLabels: labels}
	var obj client.Object
	switch c.kind {
	case "", "Deployment":
		obj = &appsv1.Deployment{ObjectMeta: meta, Spec: appsv1.DeploymentSpec{Replicas: ptr.To[int32](0), Selector: sel, Template: tmpl}}
	case "StatefulSet":
		obj = &appsv1.StatefulSet{ObjectMeta: meta, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](0), Selector: sel, Template: tmpl}}
	case "DaemonSet":
		obj = &appsv1.DaemonSet{ObjectMeta: meta, Spec: appsv1.DaemonSetSpec{Selector: sel, Template: tmpl}}
	case "CronJob":
		tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
		obj = &batchv1.CronJob{ObjectMeta: meta, Spec: batchv1.CronJobSpec{Schedule: "* * * * *", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: tmpl}}}}
	case "Rollout":
		raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&tmpl)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
			"spec": map[string]any{"replicas": int64(0), "selector": map[string]any{"matchLabels": map[string]any{"app": c.name}}, "template": raw,
				"strategy": map[string]any{"canary": map[string]any{}}},
		}}
		u.SetNamespace(ns)
		u.SetName(c.name)
		u.SetAnnotations(meta.Annotations)
		obj = u
	default:
		t.Fatalf("unknown kind %s", c.kind)
	}
	if err := cluster.Client.Create(ctx, obj); err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
}

func workloadObject(kind string) client.Object {
	switch kind {
	case "StatefulSet":
		return &appsv1.StatefulSet{}
	case "DaemonSet":
		return &appsv1.DaemonSet{}
	case "CronJob":
		return &batchv1.CronJob{}
	case "Rollout":
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("argoproj.io/v1alpha1")
		u.SetKind("Rollout")
		return u
	}
	return &appsv1.Deployment{}
}

func waitAnnotation(ctx context.Context, t *testing.T, ns string, c compatCase, key string) {
	t.Helper()
	obj := workloadObject(c.kind)
	err := framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: c.name}, obj); err != nil {
			return false, err
		}
		return obj.GetAnnotations()[key] != "", nil
	})
	if err != nil {
		t.Fatalf("%s %s never got annotation %s: %v", c.kind, c.name, key, obj.GetAnnotations())
	}
}

// revisions counts the versions of a workload's pod template: ReplicaSets
// of a Deployment, ControllerRevisions of a StatefulSet or DaemonSet, and
// spec generations of a CronJob or Argo Rollout (only keyhook changes their
// spec here).
func revisions(ctx context.Context, t *testing.T, kind, ns, name string) int {
	t.Helper()
	switch kind {
	case "", "Deployment":
		return replicaSets(ctx, t, ns, name)
	case "StatefulSet", "DaemonSet":
		list := &appsv1.ControllerRevisionList{}
		if err := cluster.Client.List(ctx, list, client.InNamespace(ns)); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, r := range list.Items {
			if slices.ContainsFunc(r.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == kind && o.Name == name }) {
				n++
			}
		}
		return n
	}
	obj := workloadObject(kind)
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatal(err)
	}
	return int(obj.GetGeneration())
}

// checkNextJob waits for the CronJob's next Job (it runs every minute) and
// checks that it has the pod template keyhook changed.
func checkNextJob(ctx context.Context, t *testing.T, ns, name string) {
	cj := &batchv1.CronJob{}
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cj); err != nil {
		t.Fatal(err)
	}
	want := cj.Spec.JobTemplate.Spec.Template.Annotations["keyhook.dev/secret-hash"]
	if want == "" {
		t.Fatalf("the CronJob's job template has no keyhook.dev/secret-hash")
	}
	err := framework.WaitFor(ctx, time.Second, func() (bool, error) {
		jobs := &batchv1.JobList{}
		if err := cluster.Client.List(ctx, jobs, client.InNamespace(ns)); err != nil {
			return false, err
		}
		return slices.ContainsFunc(jobs.Items, func(j batchv1.Job) bool {
			return slices.ContainsFunc(j.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Name == name }) &&
				j.Spec.Template.Annotations["keyhook.dev/secret-hash"] == want
		}), nil
	})
	if err != nil {
		t.Errorf("no Job of CronJob %s runs the changed template", name)
	}
}

func argoRollout(ctx context.Context, t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u := workloadObject("Rollout").(*unstructured.Unstructured)
	if err := cluster.Client.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
		t.Fatal(err)
	}
	return u
}

func hasEvent(ctx context.Context, t *testing.T, ns, name, reason string) bool {
	t.Helper()
	evs := &corev1.EventList{}
	if err := cluster.Client.List(ctx, evs, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	return slices.ContainsFunc(evs.Items, func(e corev1.Event) bool { return e.InvolvedObject.Name == name && e.Reason == reason })
}

// argoRolloutsVersion is the Argo Rollouts release whose CRD the test installs.
const argoRolloutsVersion = "v1.8.3"

// installArgoRolloutsCRD installs Argo Rollouts' Rollout CRD as its Go
// module ships it (the module proxy serves it; go caches it).
func installArgoRolloutsCRD(ctx context.Context, t *testing.T) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "go", "mod", "download", "-json", "github.com/argoproj/argo-rollouts@"+argoRolloutsVersion).Output()
	if err != nil {
		t.Fatalf("downloading Argo Rollouts %s: %v", argoRolloutsVersion, err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(mod.Dir, "manifests", "crds", "rollout-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	crd := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(b, &crd.Object); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Client.Create(ctx, crd); client.IgnoreAlreadyExists(err) != nil {
		t.Fatal(err)
	}
	err = framework.WaitFor(ctx, 100*time.Millisecond, func() (bool, error) {
		if err := cluster.Client.Get(ctx, client.ObjectKey{Name: crd.GetName()}, crd); err != nil {
			return false, err
		}
		conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		return slices.ContainsFunc(conds, func(c any) bool {
			m, _ := c.(map[string]any)
			return m["type"] == "Established" && m["status"] == "True"
		}), nil
	})
	if err != nil {
		t.Fatalf("the Rollout CRD is not established: %v", err)
	}
}
