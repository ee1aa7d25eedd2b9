package imagebuild

import (
	"bytes"
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// HelmValuesFile is the values file for charts/keyhook that make push writes
// into the layout directory: helm install ... -f bin/images/values-images.yaml.
const HelmValuesFile = "values-images.yaml"

// agentPrefix starts the name of every one-provider agent image
// (init-agent-vault, ...); the chart's agent.providerImages are keyed by
// what follows it.
const agentPrefix = "init-agent-"

// HelmValues returns the values of charts/keyhook that install the pushed
// images: image.registry and image.tag (every keyhook image defaults to
// <registry>/<name>:<tag>) and, per image, its index digest, which pins it.
// A one-provider agent image that keyhook has but that was not pushed is set
// to null, so pods of that provider get the all-provider agent rather than
// an image that is not there. Images the chart does not run (test-only ones)
// are left out.
func HelmValues(registry string, pushed []Pushed) ([]byte, error) {
	registry = strings.TrimSuffix(registry, "/")
	if registry == "" || len(pushed) == 0 {
		return nil, fmt.Errorf("imagebuild: helm values: nothing pushed")
	}
	tag := pushed[0].Tag
	digest := func(d string) map[string]any { return map[string]any{"digest": d} }
	webhook, controller, agent := map[string]any{}, map[string]any{}, map[string]any{}
	providers := map[string]any{}
	for _, im := range Images {
		if p, ok := strings.CutPrefix(im.Name, agentPrefix); ok {
			providers[p] = nil
		}
	}
	for _, p := range pushed {
		if p.Tag != tag {
			return nil, fmt.Errorf("imagebuild: helm values: %s is tagged %s, %s %s: the chart takes one tag", p.Name, p.Tag, pushed[0].Name, tag)
		}
		switch name := p.Name; {
		case name == "webhook":
			webhook["image"] = digest(p.Digest)
		case name == "controller":
			controller["image"] = digest(p.Digest)
		case name == "init-agent":
			agent["image"] = digest(p.Digest)
		case strings.HasPrefix(name, agentPrefix):
			providers[strings.TrimPrefix(name, agentPrefix)] = digest(p.Digest)
		}
	}
	if len(providers) > 0 {
		agent["providerImages"] = providers
	}
	vals := map[string]any{"image": map[string]any{"registry": registry, "tag": tag}}
	for k, v := range map[string]map[string]any{"webhook": webhook, "controller": controller, "agent": agent} {
		if len(v) > 0 {
			vals[k] = v
		}
	}
	body, err := yaml.Marshal(vals)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "# keyhook's images as make push pushed them to %s (tag %s), pinned by digest.\n", registry, tag)
	fmt.Fprintf(&b, "#   helm install keyhook charts/keyhook -n keyhook-system --create-namespace -f <this file>\n")
	b.Write(body)
	return b.Bytes(), nil
}
