{{/*
Helpers shared by every template.

Most take a dict: (dict "context" $ "component" "order"), where "component" is
one of order, matching, marketdata, migrate (or absent for release-wide objects).
*/}}

{{/* The chart name, shortened to what a DNS label allows. */}}
{{- define "exchange.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
"<release>-<chart>", or the release name alone when it already contains the
chart name, truncated to 52 characters. Object names are built from it with
"exchange.suffixedName", which shortens it further so that the suffix fits.
*/}}
{{- define "exchange.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
"<fullname>-<suffix>" in at most `max` characters (default 63, a DNS label): the
full name is cut, never the suffix, so names stay distinct per component for any
release name. Takes (dict "context" $ "suffix" "metrics" ["max" 52]).
*/}}
{{- define "exchange.suffixedName" -}}
{{- $max := int (default 63 .max) -}}
{{- $keep := int (sub $max (add1 (len .suffix))) -}}
{{- printf "%s-%s" (include "exchange.fullname" .context | trunc $keep | trimSuffix "-") .suffix -}}
{{- end -}}

{{/*
"<fullname>-<component>": the name of a component's objects. The matching
StatefulSet's name has at most 52 characters: its pods carry the label
controller-revision-hash = "<name>-<10-character hash>", which must fit in 63.
*/}}
{{- define "exchange.componentName" -}}
{{- include "exchange.suffixedName" (dict "context" .context "suffix" .component "max" (ternary 52 63 (eq .component "matching"))) -}}
{{- end -}}

{{/* The name of the matching pods' headless Service (a DNS-1035 label, 63 characters). */}}
{{- define "exchange.matchingHeadless" -}}
{{- include "exchange.suffixedName" (dict "context" . "suffix" "matching-headless") -}}
{{- end -}}

{{- define "exchange.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Selector labels: only labels that never change for the life of a release
(a Deployment's or StatefulSet's selector is immutable). No version, no chart.
*/}}
{{- define "exchange.selectorLabels" -}}
{{- $ctx := .context -}}
app.kubernetes.io/name: {{ include "exchange.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/* Every object's labels: the selector labels plus the mutable ones. */}}
{{- define "exchange.labels" -}}
{{- $ctx := .context -}}
helm.sh/chart: {{ include "exchange.chart" $ctx }}
{{ include "exchange.selectorLabels" . }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: exchange
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "exchange.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "exchange.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "exchange.image" -}}
{{- $img := .Values.image -}}
{{- if $img.digest -}}
{{- printf "%s@%s" $img.repository $img.digest -}}
{{- else -}}
{{- printf "%s:%s" $img.repository (default .Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart creates for the URLs given in values. */}}
{{- define "exchange.urlSecretName" -}}
{{- include "exchange.suffixedName" (dict "context" . "suffix" "connections") -}}
{{- end -}}

{{/*
EXCHANGE_DATABASE_URL and EXCHANGE_REDIS_URL, from the chart's Secret or the
existing ones. Fails rendering when neither a URL nor a Secret is given.
*/}}
{{- define "exchange.urlEnv" -}}
{{- $pg := .Values.postgresql -}}
{{- if not (or $pg.existingSecret $pg.url) -}}
{{- fail "set postgresql.url or postgresql.existingSecret" -}}
{{- end -}}
- name: EXCHANGE_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "exchange.urlSecretName" .) $pg.existingSecret }}
      key: {{ ternary $pg.existingSecretKey "database-url" (ne $pg.existingSecret "") }}
{{- $rd := .Values.redis }}
{{- if not (or $rd.existingSecret $rd.url) -}}
{{- fail "set redis.url or redis.existingSecret" -}}
{{- end }}
- name: EXCHANGE_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "exchange.urlSecretName" .) $rd.existingSecret }}
      key: {{ ternary $rd.existingSecretKey "redis-url" (ne $rd.existingSecret "") }}
{{- end -}}

{{/*
The EXCHANGE_* and OTEL_* settings every service shares, as ConfigMap data.
Takes (dict "context" $ "service" "order-service").
*/}}
{{- define "exchange.commonConfig" -}}
{{- $v := .context.Values -}}
EXCHANGE_LOG_LEVEL: {{ $v.config.logLevel | quote }}
EXCHANGE_LOG_FORMAT: {{ $v.config.logFormat | quote }}
EXCHANGE_DB_POOL_MIN: {{ $v.config.dbPoolMin | quote }}
EXCHANGE_DB_POOL_MAX: {{ $v.config.dbPoolMax | quote }}
EXCHANGE_SHUTDOWN_GRACE: {{ $v.config.shutdownGrace | quote }}
EXCHANGE_KEEPALIVE_TIME_MS: {{ $v.config.keepaliveTimeMs | int64 | quote }}
EXCHANGE_KEEPALIVE_TIMEOUT_MS: {{ $v.config.keepaliveTimeoutMs | int64 | quote }}
EXCHANGE_GRPC_MAX_PENDING_CALLS: {{ $v.config.grpcMaxPendingCalls | int64 | quote }}
OTEL_SERVICE_NAME: {{ .service | quote }}
OTEL_LOGS_EXPORTER: "none"
{{- if $v.otel.enabled }}
OTEL_TRACES_EXPORTER: "otlp"
{{- with $v.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ $v.otel.protocol | quote }}
OTEL_TRACES_SAMPLER: {{ $v.otel.tracesSampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ $v.otel.tracesSamplerArg | quote }}
{{- else }}
OTEL_TRACES_EXPORTER: "none"
{{- end }}
{{- if $v.metrics.enabled }}
EXCHANGE_METRICS_LISTEN: {{ printf "0.0.0.0:%d" ($v.metrics.port | int) | quote }}
{{- end }}
OTEL_METRICS_EXPORTER: "none"
{{- range $k, $val := $v.otel.env }}
{{ $k }}: {{ $val | quote }}
{{- end }}
{{- end -}}

{{/*
EXCHANGE_GRPC_MAX_CONNECTION_AGE(_GRACE) from a service's config (order, marketdata):
GOAWAY to connections older than the age, so that clients spread over new replicas.
*/}}
{{- define "exchange.connectionAgeConfig" -}}
EXCHANGE_GRPC_MAX_CONNECTION_AGE: {{ .maxConnectionAgeSeconds | toString | quote }}
EXCHANGE_GRPC_MAX_CONNECTION_AGE_GRACE: {{ .maxConnectionAgeGraceSeconds | toString | quote }}
{{- end -}}

{{/*
Container env every service shares: the pod's identity (downward API), the
connection URLs, OTEL_RESOURCE_ATTRIBUTES, then the component's extraEnv.
Takes (dict "context" $ "values" .Values.order).
*/}}
{{- define "exchange.commonEnv" -}}
{{- $ctx := .context -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{ include "exchange.urlEnv" $ctx }}
{{- $attrs := list "service.namespace=exchange" (printf "service.version=%s" $ctx.Chart.AppVersion) "k8s.namespace.name=$(POD_NAMESPACE)" "k8s.pod.name=$(POD_NAME)" "k8s.node.name=$(NODE_NAME)" -}}
{{- range $k, $val := $ctx.Values.otel.resourceAttributes }}
{{- $attrs = append $attrs (printf "%s=%s" $k $val) -}}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attrs | quote }}
{{- with .values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The gRPC health probes (grpc.health.v1, overall server status).
Takes (dict "port" 50051 "probes" .Values.order.probes).
*/}}
{{- define "exchange.grpcProbes" -}}
{{- $port := .port -}}
{{- range $i, $kind := list "startup" "liveness" "readiness" }}
{{- if $i }}{{ "\n" }}{{ end -}}
{{ $kind }}Probe:
  grpc:
    port: {{ $port }}
  {{- toYaml (get $.probes $kind) | nindent 2 }}
{{- end }}
{{- end -}}

{{/* preStop sleep so endpoints drop a pod before it stops serving. */}}
{{- define "exchange.lifecycle" -}}
{{- if gt (int .preStopSleepSeconds) 0 -}}
lifecycle:
  preStop:
    exec:
      command: ["sleep", {{ .preStopSleepSeconds | quote }}]
{{- end }}
{{- end -}}

{{/*
Pod-level scheduling and security settings a component shares. A component whose
values have `podAntiAffinity` (matching) gets that anti-affinity among its own pods,
unless its `affinity` has a podAntiAffinity of its own.
Takes (dict "context" $ "values" .Values.order "component" "order").
*/}}
{{- define "exchange.podSpecCommon" -}}
{{- $ctx := .context -}}
{{- $v := .values -}}
serviceAccountName: {{ include "exchange.serviceAccountName" $ctx }}
automountServiceAccountToken: {{ $ctx.Values.serviceAccount.automountToken }}
enableServiceLinks: false
{{- with $ctx.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $ctx.Values.podSecurityContext | nindent 2 }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy ($v.affinity | default dict) -}}
{{- $anti := $v.podAntiAffinity | default dict -}}
{{- if and $anti.type (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "labelSelector" (dict "matchLabels" (include "exchange.selectorLabels" (dict "context" $ctx "component" .component) | fromYaml)) "topologyKey" $anti.topologyKey -}}
{{- if eq $anti.type "hard" -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" (int $anti.weight) "podAffinityTerm" $term))) -}}
{{- end -}}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Pod annotations: checksum/config of the component's ConfigMap and the URL
Secret, so a changed setting rolls the pods. Takes (dict "context" $
"values" .Values.order "config" <rendered configmap>).
*/}}
{{- define "exchange.podAnnotations" -}}
checksum/config: {{ printf "%s\n%s" .config (include "exchange.urlSecret" .context) | sha256sum }}
{{- with .values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The chart's Secret holding the URLs given in values (empty when both are existing Secrets). */}}
{{- define "exchange.urlSecret" -}}
{{- if or (not .Values.postgresql.existingSecret) (not .Values.redis.existingSecret) -}}
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "exchange.urlSecretName" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "exchange.labels" (dict "context" .) | nindent 4 }}
type: Opaque
stringData:
  {{- if not .Values.postgresql.existingSecret }}
  database-url: {{ required "set postgresql.url or postgresql.existingSecret" .Values.postgresql.url | quote }}
  {{- end }}
  {{- if not .Values.redis.existingSecret }}
  redis-url: {{ required "set redis.url or redis.existingSecret" .Values.redis.url | quote }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* The writable scratch volume (the root filesystem is read-only). */}}
{{- define "exchange.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{- define "exchange.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* The metrics container port, when metrics are on. */}}
{{- define "exchange.metricsPort" -}}
{{- if .Values.metrics.enabled -}}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
  protocol: TCP
{{- end }}
{{- end -}}
