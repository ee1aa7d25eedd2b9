package mutate

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keyhook/keyhook/pkg/annotations"
)

func TestReservedNames(t *testing.T) {
	for name, tc := range map[string]struct {
		pod  corev1.PodSpec
		ann  map[string]string
		want string
	}{
		"app container named like the agent": {
			pod:  corev1.PodSpec{Containers: []corev1.Container{{Name: AgentContainerName}}},
			want: "rename the container",
		},
		"even on a pod injected before": {
			pod:  corev1.PodSpec{Containers: []corev1.Container{{Name: AgentContainerName}}},
			ann:  map[string]string{annotations.Status: annotations.StatusInjected},
			want: "rename the container",
		},
		"init container of the user": {
			pod:  corev1.PodSpec{InitContainers: []corev1.Container{{Name: AgentContainerName}}, Containers: []corev1.Container{{Name: "app"}}},
			want: "rename the init container",
		},
		"volume of the user": {
			pod:  corev1.PodSpec{Volumes: []corev1.Volume{{Name: SecretsVolumeName}}, Containers: []corev1.Container{{Name: "app"}}},
			want: "rename the volume",
		},
		"secret-mode volume name": {
			pod:  corev1.PodSpec{Volumes: []corev1.Volume{{Name: SecretModeVolumeName("db")}}, Containers: []corev1.Container{{Name: "app"}}},
			want: "rename the volume",
		},
		"keyhook's own, re-injected": {
			pod: corev1.PodSpec{
				InitContainers: []corev1.Container{{Name: AgentContainerName}},
				Volumes:        []corev1.Volume{{Name: SecretsVolumeName}, {Name: TokenVolumeName}},
				Containers:     []corev1.Container{{Name: "app"}},
			},
			ann: map[string]string{annotations.Status: annotations.StatusInjected},
		},
		"no collision": {pod: corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}, Volumes: []corev1.Volume{{Name: "keyhook"}}}},
	} {
		t.Run(name, func(t *testing.T) {
			err := reservedNames(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: tc.ann}, Spec: tc.pod})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("denied: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
