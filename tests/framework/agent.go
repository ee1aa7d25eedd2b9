package framework

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/keyhook/keyhook/pkg/mutate"
)

// AgentRun is the outcome of running the init-agent of a stored pod.
type AgentRun struct {
	Output   string
	Err      error // nil when it exited 0
	Duration time.Duration
	// TerminationMessage is what the agent wrote to its termination log,
	// which the kubelet would show as the pod's termination message.
	TerminationMessage string
}

// RunAgent does what a kubelet would do for the keyhook-agent init container
// of pod: it resolves the container's env (secretKeyRefs included), requests
// each projected service-account token the pod spec names (bound to the pod)
// and runs the agent binary as a local process with exactly the container's
// args and env, rooted at root instead of the container's file system.
// extraArgs are appended to the container's args.
func RunAgent(ctx context.Context, c *Cluster, bin string, pod *corev1.Pod, root string, extraArgs ...string) (*AgentRun, error) {
	cmd, err := AgentCommand(ctx, c, bin, pod, root, extraArgs...)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	out, err := cmd.CombinedOutput()
	run := &AgentRun{Output: string(out), Err: err, Duration: time.Since(start)}
	msg, rerr := os.ReadFile(filepath.Join(root, TerminationLog))
	if rerr != nil {
		return nil, rerr
	}
	run.TerminationMessage = string(msg)
	return run, nil
}

// TerminationLog is the container's default terminationMessagePath, which
// the kubelet creates empty before the container starts.
const TerminationLog = "/dev/termination-log"

// AgentCommand prepares what RunAgent runs — the env, the projected tokens
// under root — and returns the command, not started, so that a caller can
// run it more than once (with exec.Cmd's fields copied) or read its
// resource usage.
func AgentCommand(ctx context.Context, c *Cluster, bin string, pod *corev1.Pod, root string, extraArgs ...string) (*exec.Cmd, error) {
	var agent *corev1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == mutate.AgentContainerName {
			agent = &pod.Spec.InitContainers[i]
		}
	}
	if agent == nil {
		return nil, fmt.Errorf("pod %s/%s has no %s init container", pod.Namespace, pod.Name, mutate.AgentContainerName)
	}
	env := []string{"KEYHOOK_AGENT_ROOT=" + root}
	if err := os.MkdirAll(filepath.Join(root, filepath.Dir(TerminationLog)), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, TerminationLog), nil, 0o666); err != nil {
		return nil, err
	}
	for _, e := range agent.Env {
		switch {
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := &corev1.Secret{}
			if err := c.Client.Get(ctx, client.ObjectKey{Namespace: pod.Namespace, Name: ref.Name}, s); err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			env = append(env, e.Name+"="+string(s.Data[ref.Key]))
		default:
			return nil, fmt.Errorf("env %s: unsupported valueFrom", e.Name)
		}
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range agent.VolumeMounts {
		dir := filepath.Join(root, m.MountPath)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return nil, err
		}
		v := volumes[m.Name]
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil {
				continue
			}
			tr, err := c.Clientset.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, serviceAccount(pod), &authenticationv1.TokenRequest{
				Spec: authenticationv1.TokenRequestSpec{
					Audiences:         []string{sat.Audience},
					ExpirationSeconds: sat.ExpirationSeconds,
					BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
				},
			}, metav1.CreateOptions{})
			if err != nil {
				return nil, fmt.Errorf("TokenRequest for %s/%s: %w", pod.Namespace, serviceAccount(pod), err)
			}
			if err := os.WriteFile(filepath.Join(dir, sat.Path), []byte(tr.Status.Token), 0o444); err != nil {
				return nil, err
			}
		}
	}
	args := append(append([]string{}, agent.Args...), extraArgs...)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	return cmd, nil
}

func serviceAccount(pod *corev1.Pod) string {
	if pod.Spec.ServiceAccountName != "" {
		return pod.Spec.ServiceAccountName
	}
	return "default"
}
