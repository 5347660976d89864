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
{{- default (printf "%s-api-token" (include "multicluster.fullname" .)) .Values.apiToken.existingSecret }}
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
{{- $_ := set $cfg "store" (dict "type" "mysql" "host" (include "multicluster.dbHost" .) "port" (int .Values.db.port) "user" .Values.db.user "database" .Values.db.database) }}
{{- $_ := set $cfg "server" (dict "port" (int .Values.containerPort)) }}
{{- toYaml $cfg }}
{{- end }}
