{{/* The release's full name: the release name, or release-chart when it lacks the chart's name. */}}
{{- define "keda-llm-scaler.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* The selector labels: what the Service, PDB, NetworkPolicy and spread select on. */}}
{{- define "keda-llm-scaler.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keda-llm-scaler.fullname" . }}
{{- end -}}

{{/* Every object's labels: the selector labels, Helm's, and commonLabels. */}}
{{- define "keda-llm-scaler.labels" -}}
{{ include "keda-llm-scaler.selectorLabels" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The Secret holding the server certificate. */}}
{{- define "keda-llm-scaler.tlsSecret" -}}
{{- if .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
{{- printf "%s-tls" (include "keda-llm-scaler.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The scaler's gRPC address as KEDA dials it. */}}
{{- define "keda-llm-scaler.address" -}}
{{- printf "%s.%s.svc.cluster.local:6000" (include "keda-llm-scaler.fullname" .) .Release.Namespace -}}
{{- end -}}

{{/* The config, with server.tls set when TLS is on. */}}
{{- define "keda-llm-scaler.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- if .Values.tls.enabled -}}
{{- $tls := dict "cert_file" "/etc/keda-llm-scaler/tls/tls.crt" "key_file" "/etc/keda-llm-scaler/tls/tls.key" -}}
{{- if .Values.tls.clientAuth -}}
{{- $_ := set $tls "client_ca_file" "/etc/keda-llm-scaler/tls/ca.crt" -}}
{{- end -}}
{{- $server := get $config "server" | default dict -}}
{{- $_ := set $server "tls" $tls -}}
{{- $_ := set $config "server" $server -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
