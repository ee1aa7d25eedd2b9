{{/*
Names are fixed: one keyhook per cluster (its registrations, ClusterRole and
CRDs are cluster-wide), and cmd/webhook's flags and the generated RBAC name
them. Only the namespace is the release's.
*/}}
{{- define "keyhook.name" -}}keyhook{{- end }}
{{- define "keyhook.webhookService" -}}keyhook-webhook{{- end }}
{{- define "keyhook.tlsSecret" -}}keyhook-webhook-tls{{- end }}

{{/* Labels of every object; "component" is webhook (a controller later). */}}
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

{{/* repository:tag, or repository@digest when a digest is set. */}}
{{- define "keyhook.image" -}}
{{- $tag := .image.tag | default .root.Chart.AppVersion -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}
{{- end }}

{{/*
The generated RBAC of cmd/webhook (manifests/rbac/role.yaml, copied to
files/ by make manifests): the rules of the ClusterRole or the Role.
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
