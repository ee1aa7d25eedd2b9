{{/*
Names are fixed: one keyhook per cluster (its registrations, ClusterRole and
CRDs are cluster-wide), and cmd/webhook's flags and the generated RBAC name
them. Only the namespace is the release's.
*/}}
{{- define "keyhook.name" -}}keyhook{{- end }}
{{- define "keyhook.webhookService" -}}keyhook-webhook{{- end }}
{{- define "keyhook.tlsSecret" -}}keyhook-webhook-tls{{- end }}

{{/* Labels of every object; "component" is webhook or controller. */}}
{{- define "keyhook.labels" -}}
app.kubernetes.io/name: keyhook
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/*
Selector labels of one component. app.kubernetes.io/name=keyhook also keeps
keyhook's own pods away from its webhook (objectSelector of every entry).
*/}}
{{- define "keyhook.selectorLabels" -}}
app.kubernetes.io/name: keyhook
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/*
A keyhook image: .image (repository, tag, digest; each may be empty) over
the chart-wide image.registry and image.tag, .name the image's name below
the registry (make images' names). repository@digest when a digest is set,
else repository:tag.
*/}}
{{- define "keyhook.image" -}}
{{- $g := .root.Values.image -}}
{{- $i := .image | default dict -}}
{{- $repo := $i.repository | default (printf "%s/%s" (trimSuffix "/" $g.registry) .name) -}}
{{- $tag := $i.tag | default $g.tag | default .root.Chart.AppVersion -}}
{{- if $i.digest -}}
{{ $repo }}@{{ $i.digest }}
{{- else -}}
{{ $repo }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/* The pull policy of .image, default image.pullPolicy. */}}
{{- define "keyhook.pullPolicy" -}}
{{- (.image | default dict).pullPolicy | default .root.Values.image.pullPolicy -}}
{{- end }}

{{/*
Pod placement of one component (.component, .v its values): priority
class, affinity (default: spread replicas across nodes; requireAntiAffinity
makes it hard), node selector and tolerations.
*/}}
{{- define "keyhook.scheduling" -}}
{{- $v := .v -}}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
affinity:
{{- if $v.affinity }}
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if $v.requireAntiAffinity }}
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels: {{- include "keyhook.selectorLabels" (dict "component" .component) | nindent 12 }}
{{- else }}
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels: {{- include "keyhook.selectorLabels" (dict "component" .component) | nindent 14 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector: {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations: {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The PodDisruptionBudget of one component, when enabled and replicas > 1
(with one replica, minAvailable 1 would block every drain).
*/}}
{{- define "keyhook.pdb" -}}
{{- $v := .v -}}
{{- if and $v.podDisruptionBudget.enabled (gt (int $v.replicas) 1) }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: keyhook-{{ .component }}
  namespace: {{ .root.Release.Namespace }}
  labels: {{- include "keyhook.labels" (dict "root" .root "component" .component) | nindent 4 }}
spec:
  minAvailable: {{ $v.podDisruptionBudget.minAvailable }}
  selector:
    matchLabels: {{- include "keyhook.selectorLabels" (dict "component" .component) | nindent 6 }}
{{- end }}
{{- end }}

{{/*
The generated RBAC of one role (.role: webhook or controller;
manifests/rbac/<role>/role.yaml, copied to files/<role>-role.yaml by make
manifests): the rules of its ClusterRole or Role (.kind).
*/}}
{{- define "keyhook.generatedRules" -}}
{{- $kind := .kind -}}
{{- range $doc := splitList "\n---\n" (.root.Files.Get (printf "files/%s-role.yaml" .role)) }}
{{- $o := fromYaml $doc }}
{{- if and $o (eq (get $o "kind") $kind) }}
{{- toYaml (get $o "rules") }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A generated webhook registration (files/, from pkg/webhookconfig via make
manifests), pointed at this release's namespace: the Service's namespace
and the namespace never sent to the webhook.
*/}}
{{- define "keyhook.registration" -}}
{{- $o := fromYaml (.root.Files.Get .file) -}}
{{- $ns := .root.Release.Namespace -}}
{{- $hooks := list -}}
{{- range $w := (get $o "webhooks") }}
{{- $_ := set $w.clientConfig.service "namespace" $ns }}
{{- $_ := set $w "timeoutSeconds" ($.root.Values.webhookTimeoutSeconds | int) }}
{{- with $w.namespaceSelector }}
{{- range $e := .matchExpressions }}
{{- if eq $e.key "kubernetes.io/metadata.name" }}
{{- $_ := set $e "values" (list "kube-system" $ns) }}
{{- end }}
{{- end }}
{{- end }}
{{- $hooks = append $hooks $w }}
{{- end }}
{{- $_ := set $o "webhooks" $hooks }}
{{- $meta := dict "name" (include "keyhook.name" .root) "labels" (include "keyhook.labels" (dict "root" .root "component" "webhook") | fromYaml) }}
{{- if eq .root.Values.tls.mode "certManager" }}
{{- $_ := set $meta "annotations" (dict "cert-manager.io/inject-ca-from" (printf "%s/%s" $ns (include "keyhook.webhookService" .root))) }}
{{- end }}
{{- $_ := set $o "metadata" $meta }}
{{- toYaml $o }}
{{- end }}

{{/*
keyhook.env is the env of a keyhook container, given its extraEnv:
GOMEMLIMIT from the container's memory limit (the Go runtime collects
harder as its memory nears the limit, rather than being OOM-killed past
it) unless extraEnv sets it, then extraEnv.
*/}}
{{- define "keyhook.env" -}}
{{- $names := list }}
{{- range . }}{{ $names = append $names .name }}{{ end }}
{{- if not (has "GOMEMLIMIT" $names) }}
- name: GOMEMLIMIT
  valueFrom:
    resourceFieldRef: {resource: limits.memory}
{{- end }}
{{- with . }}
{{ toYaml . }}
{{- end }}
{{- end }}
