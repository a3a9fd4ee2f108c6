{{/* The chart's name. */}}
{{- define "strom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The StatefulSet's name, which its pods' names (NAME-ORDINAL) and so the
nodes' stable DNS names start with. Short enough that NAME-headless stays a
valid Service name.
*/}}
{{- define "strom.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 54 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 54 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The headless Service: the pods' stable names and the quorum. */}}
{{- define "strom.headlessName" -}}
{{- printf "%s-headless" (include "strom.fullname" .) -}}
{{- end -}}

{{- define "strom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "strom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "strom.labels" -}}
helm.sh/chart: {{ include "strom.chart" . }}
{{ include "strom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "strom.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
A broker config's value as the string strom reads: numbers that YAML gave
as floats but are whole (1073741824) without an exponent.
*/}}
{{- define "strom.configValue" -}}
{{- if kindIs "float64" . -}}
{{- if eq . (floor .) -}}{{ int64 . }}{{- else -}}{{ . }}{{- end -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}

{{/* The checks of the values that the templates rely on. */}}
{{- define "strom.validate" -}}
{{- $replicas := .Values.replicas -}}
{{- if not (or (kindIs "float64" $replicas) (kindIs "int64" $replicas) (kindIs "int" $replicas)) -}}
{{- fail (printf "replicas must be a whole number of at least 1 (got %v)" $replicas) -}}
{{- else if or (lt (float64 $replicas) 1.0) (ne (float64 $replicas) (floor $replicas)) -}}
{{- fail (printf "replicas must be a whole number of at least 1 (got %v)" $replicas) -}}
{{- end -}}
{{- range $key := list "node.id" "advertised.listeners" "listeners" "controller.quorum.voters" "process.roles" "log.dirs" -}}
{{- if hasKey $.Values.config $key -}}
{{- fail (printf "config.%s cannot be set: the entrypoint derives it for each pod (deploy/README.md)" $key) -}}
{{- end -}}
{{- end -}}
{{- if not (has .Values.podAntiAffinity (list "soft" "hard" "none")) -}}
{{- fail (printf "podAntiAffinity must be soft, hard or none (got %v)" .Values.podAntiAffinity) -}}
{{- end -}}
{{- end -}}
