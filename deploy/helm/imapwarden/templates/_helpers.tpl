{{/* Chart name, overridable. */}}
{{- define "imapwarden.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name: the prefix of every object. */}}
{{- define "imapwarden.fullname" -}}
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

{{- define "imapwarden.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imapwarden.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imapwarden.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "imapwarden.labels" -}}
helm.sh/chart: {{ include "imapwarden.chart" . }}
{{ include "imapwarden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "imapwarden.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imapwarden.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "imapwarden.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "imapwarden.adminTokenSecretName" -}}
{{- default (printf "%s-admin-token" (include "imapwarden.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{- define "imapwarden.metricsTokenSecretName" -}}
{{- default (printf "%s-metrics-token" (include "imapwarden.fullname" .)) .Values.metricsToken.existingSecret }}
{{- end }}

{{- define "imapwarden.auditKeySecretName" -}}
{{- default (printf "%s-audit-key" (include "imapwarden.fullname" .)) .Values.auditKey.existingSecret }}
{{- end }}

{{- define "imapwarden.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "imapwarden.fullname" .)) .Values.tls.secret.name }}
{{- end }}

{{/*
Policy files as a dict: ConfigMap key -> {path, content}. Keys are the
relative path with "/" turned into "__" (ConfigMap keys cannot hold "/");
the volume's items put each file back at its path. Files under policies/ in
the chart come first, then .Values.policies.files (which wins on the same
path). *_test.rego files of the chart directory are left out.
*/}}
{{- define "imapwarden.policyFiles" -}}
{{- $out := dict }}
{{- range $path, $_ := .Files.Glob "policies/**" }}
{{- if not (hasSuffix "_test.rego" $path) }}
{{- $rel := trimPrefix "policies/" $path }}
{{- $_ := set $out (replace "/" "__" $rel) (dict "path" $rel "content" ($.Files.Get $path)) }}
{{- end }}
{{- end }}
{{- range $rel, $content := .Values.policies.files }}
{{- $_ := set $out (replace "/" "__" $rel) (dict "path" $rel "content" $content) }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
Seconds in a duration written as whole seconds or minutes ("45s", "1m");
-1 for any other form, which the chart then does not check.
*/}}
{{- define "imapwarden.durationSeconds" -}}
{{- $d := toString . }}
{{- if regexMatch "^[0-9]+s$" $d }}
{{- trimSuffix "s" $d | atoi }}
{{- else if regexMatch "^[0-9]+m$" $d }}
{{- mul (trimSuffix "m" $d | atoi) 60 }}
{{- else }}
{{- -1 }}
{{- end }}
{{- end }}

{{/*
Checks that catch a chart that would deploy but never become ready, or
cut drains short: listener ports and container ports, drain timeout and
grace period, the TLS source.
*/}}
{{- define "imapwarden.validate" -}}
{{- $ports := list (toString .Values.containerPorts.imaps) (toString .Values.containerPorts.imap) }}
{{- range $i, $l := .Values.config.listeners }}
{{- $port := regexReplaceAll "^.*:" (toString $l.address) "" }}
{{- if not (has $port $ports) }}
{{- fail (printf "config.listeners[%d].address %q: the port must be containerPorts.imaps (%v) or containerPorts.imap (%v), which the Service sends traffic to" $i $l.address $.Values.containerPorts.imaps $.Values.containerPorts.imap) }}
{{- end }}
{{- end }}
{{- with .Values.config.admin }}
{{- $port := regexReplaceAll "^.*:" (toString .address) "" }}
{{- if ne $port (toString $.Values.containerPorts.admin) }}
{{- fail (printf "config.admin.address %q: the port must be containerPorts.admin (%v), which the probes and the admin Service use" .address $.Values.containerPorts.admin) }}
{{- end }}
{{- end }}
{{- /* The ServiceMonitor sends the metrics token: the proxy must know it, as read scope. */}}
{{- $metrics := false }}
{{- range ((.Values.config.admin | default dict).tokens | default list) }}
{{- if eq (toString .file) "/etc/imapwarden/metrics/token" }}
{{- if ne (toString .scope) "read" }}
{{- fail (printf "config.admin.tokens: %v is the token the ServiceMonitor sends: its scope must be read" .name) }}
{{- end }}
{{- $metrics = true }}
{{- end }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not $metrics) }}
{{- fail "serviceMonitor.enabled: config.admin.tokens has no entry for /etc/imapwarden/metrics/token (scope read), the token the ServiceMonitor sends" }}
{{- end }}
{{- $drain := include "imapwarden.durationSeconds" (default "30s" .Values.config.drain_timeout) | atoi }}
{{- $lame := include "imapwarden.durationSeconds" (default "5s" .Values.config.lame_duck) | atoi }}
{{- $need := add $drain (max $lame 0) (int .Values.lifecycle.preStopSleepSeconds) }}
{{- if and (ge $drain 0) (le (int .Values.terminationGracePeriodSeconds) $need) }}
{{- fail (printf "terminationGracePeriodSeconds (%v) must exceed config.drain_timeout (%ds) plus config.lame_duck (%ds) plus lifecycle.preStopSleepSeconds (%v), or the drain is cut short" .Values.terminationGracePeriodSeconds $drain (max $lame 0) .Values.lifecycle.preStopSleepSeconds) }}
{{- end }}
{{- if not (has .Values.tls.source (list "secret" "pvc" "none")) }}
{{- fail (printf "tls.source %q: want secret, pvc or none" .Values.tls.source) }}
{{- end }}
{{- if and .Values.tls.secret.create (or (not .Values.tls.secret.cert) (not .Values.tls.secret.key)) }}
{{- fail "tls.secret.create needs tls.secret.cert and tls.secret.key" }}
{{- end }}
{{- if and .Values.tls.secret.create .Values.tls.certManager.enabled }}
{{- fail "tls.secret.create and tls.certManager.enabled both write the TLS Secret: choose one" }}
{{- end }}
{{- end }}

{{/*
A generated admin token Secret (40 random characters), kept across upgrades
(the pods read it at start) and uninstalls. Takes a dict: root (the
context), values (.Values.adminToken or .Values.metricsToken), name.
*/}}
{{- define "imapwarden.tokenSecret" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .name }}
{{- $token := "" }}
{{- if and $existing (index ($existing.data | default dict) .values.key) }}
{{- $token = index $existing.data .values.key }}
{{- else }}
{{- $token = randAlphaNum 40 | b64enc }}
{{- end }}
apiVersion: v1
kind: Secret
metadata:
  name: {{ .name }}
  labels:
    {{- include "imapwarden.labels" .root | nindent 4 }}
  annotations:
    helm.sh/resource-policy: keep
type: Opaque
data:
  {{ .values.key }}: {{ $token }}
{{- end }}
