{{/* Names and labels shared by every template. */}}

{{- define "multicluster.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multicluster.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "multicluster.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multicluster.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "multicluster.labels" -}}
{{ include "multicluster.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "multicluster.mariadbSelectorLabels" -}}
app.kubernetes.io/name: mariadb
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "multicluster.mariadbLabels" -}}
{{ include "multicluster.mariadbSelectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "multicluster.serviceAccountName" -}}
{{- default (include "multicluster.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "multicluster.leaseNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.leaseNamespace }}
{{- end }}

{{- define "multicluster.kubeconfigSecret" -}}
{{- default (printf "%s-kubeconfigs" (include "multicluster.fullname" .)) .Values.kubeconfigs.existingSecret }}
{{- end }}

{{- define "multicluster.dbSecret" -}}
{{- default (printf "%s-db" (include "multicluster.fullname" .)) .Values.db.existingSecret }}
{{- end }}

{{- define "multicluster.apiTokenSecret" -}}
{{- default (printf "%s-api" (include "multicluster.fullname" .)) .Values.apiToken.existingSecret }}
{{- end }}

{{/* One value of a Secret the chart generates, base64: the explicit value if given, else the one the release's
     existing Secret already holds (so upgrades keep it; `lookup` sees nothing under `helm template`), else a new
     random one. Arguments: dict "existing" (lookup result) "key" "value" "length". */}}
{{- define "multicluster.secretValue" -}}
{{- $data := (.existing | default dict).data | default dict }}
{{- if .value }}
{{- .value | b64enc }}
{{- else if index $data .key }}
{{- index $data .key }}
{{- else }}
{{- randAlphaNum (int .length) | b64enc }}
{{- end }}
{{- end }}

{{/* "true" when a config.clusters entry reaches the pods' own cluster through their ServiceAccount. */}}
{{- define "multicluster.inCluster" -}}
{{- range .Values.config.clusters }}{{ if (.metadata | default dict).inCluster }}true{{ end }}{{ end }}
{{- end }}

{{- define "multicluster.automountToken" -}}
{{- if kindIs "bool" .Values.serviceAccount.automountToken }}
{{- .Values.serviceAccount.automountToken }}
{{- else }}
{{- ne (include "multicluster.inCluster" .) "" }}
{{- end }}
{{- end }}

{{/* rbac.readRules, refused if any names `*` or a subresource: they grant reads to every namespace. */}}
{{- define "multicluster.readRules" -}}
{{- range $i, $r := .Values.rbac.readRules }}
{{- range $g := $r.apiGroups }}
{{- if contains "*" $g }}{{ fail (printf "rbac.readRules[%d]: `*` in apiGroups grants every group; list them" $i) }}{{ end }}
{{- end }}
{{- range $res := $r.resources }}
{{- if or (contains "*" $res) (contains "/" $res) }}
{{- fail (printf "rbac.readRules[%d]: %q is a wildcard or a subresource; list whole resources by name" $i $res) }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson .Values.rbac.readRules }}
{{- end }}

{{/* The types the daemon syncs: config.resources.include when set, else exactly what rbac.readRules grants (core
     types spelled v1/NAME, others NAME.GROUP), plus v1/secrets with sync.storeSecrets. */}}
{{- define "multicluster.include" -}}
{{- $explicit := dig "resources" "include" list .Values.config }}
{{- if $explicit }}
{{- toJson $explicit }}
{{- else }}
{{- $out := list }}
{{- range $r := fromJsonArray (include "multicluster.readRules" .) }}
{{- range $g := $r.apiGroups }}
{{- range $res := $r.resources }}
{{- $out = append $out (ternary (printf "v1/%s" $res) (printf "%s.%s" $res $g) (eq $g "")) }}
{{- end }}
{{- end }}
{{- end }}
{{- if dig "sync" "storeSecrets" false .Values.config }}
{{- $out = append $out "v1/secrets" }}
{{- end }}
{{- toJson $out }}
{{- end }}
{{- end }}

{{/* Host names the daemon accepts besides localhost and IPs: the Service's, and api.allowedHosts. */}}
{{- define "multicluster.allowedHosts" -}}
{{- $svc := include "multicluster.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- $hosts := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- toJson (concat $hosts .Values.api.allowedHosts | uniq) }}
{{- end }}

{{- define "multicluster.mariadbName" -}}
{{- printf "%s-mariadb" (include "multicluster.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "multicluster.dbHost" -}}
{{- default (printf "%s.%s.svc" (include "multicluster.mariadbName" .) .Release.Namespace) .Values.db.host }}
{{- end }}

{{/* The daemon's config.yaml: values.config plus store/server, each cluster's configPath defaulted (the chart-only
     key `inCluster: true` leaves it out instead, so the daemon uses the pod's ServiceAccount for that cluster). */}}
{{- define "multicluster.config" -}}
{{- $cfg := deepCopy (omit .Values.config "store" "server") }}
{{- $clusters := list }}
{{- range $i, $c := required "config.clusters must list at least one cluster" .Values.config.clusters }}
{{- $md := deepCopy (required (printf "config.clusters[%d] needs metadata:" $i) $c.metadata) }}
{{- $inCluster := $md.inCluster }}
{{- $md = omit $md "inCluster" }}
{{- if and $inCluster $md.configPath }}
{{- fail (printf "config.clusters[%d]: inCluster and configPath exclude each other" $i) }}
{{- end }}
{{- if not (or $md.configPath $inCluster) }}
{{- $_ := set $md "configPath" (printf "/etc/multicluster/kubeconfigs/%s.kubeconfig" (required (printf "config.clusters[%d].metadata.clusterName is required" $i) $md.clusterName)) }}
{{- end }}
{{- $clusters = append $clusters (dict "metadata" $md) }}
{{- end }}
{{- $_ := set $cfg "clusters" $clusters }}
{{- $resources := deepCopy (dig "resources" dict $cfg) }}
{{- $_ := set $resources "include" (fromJsonArray (include "multicluster.include" .)) }}
{{- $_ := set $cfg "resources" $resources }}
{{- $store := dict "type" "mysql" "user" .Values.db.user "database" .Values.db.database }}
{{- if .Values.db.endpoints }}
{{- $_ := set $store "endpoints" .Values.db.endpoints }}
{{- else }}
{{- $_ := set $store "host" (include "multicluster.dbHost" .) }}
{{- $_ := set $store "port" (int .Values.db.port) }}
{{- end }}
{{- $_ := set $cfg "store" $store }}
{{- $server := dict "port" (int .Values.containerPort) "allowedHosts" (fromJsonArray (include "multicluster.allowedHosts" .)) }}
{{- with .Values.api.allowedOrigins }}
{{- $_ := set $server "allowedOrigins" . }}
{{- end }}
{{- if .Values.apiService.enabled }}
{{- $_ := set $server "apiServiceNamespace" .Release.Namespace }}
{{- $_ := set $server "apiServiceName" (include "multicluster.fullname" .) }}
{{- with .Values.apiService.auth }}
{{- $_ := set $server "auth" . }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "server" $server }}
{{- toYaml $cfg }}
{{- end }}
