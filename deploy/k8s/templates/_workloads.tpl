{{/*
Objects that order-service and marketdata-service share the shape of.
Each takes (dict "context" $ "component" "order" "service" "order-service"
"values" .Values.order); "service" is the console script (and container name).
*/}}

{{/* A stateless gRPC Deployment (order, marketdata). */}}
{{- define "exchange.deployment" -}}
{{- $ctx := .context -}}
{{- $v := .values -}}
{{- $c := dict "context" $ctx "component" .component -}}
{{- $config := include (printf "%s/%s/configmap.yaml" $ctx.Template.BasePath .component) $ctx -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "exchange.componentName" $c }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "exchange.labels" $c | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicas }}
  {{- else }}
  {{- /*
  The HorizontalPodAutoscaler sets the replicas. Leaving the field out of a release that
  had it would reset it (a three-way merge deletes it, a server-side apply drops the
  field it owned): both give the default, 1, until the autoscaler next syncs. So an
  upgrade renders the count the Deployment has now; an install (nothing to look up,
  as with `helm template`) leaves it to the autoscaler.
  */}}
  {{- $live := lookup "apps/v1" "Deployment" $ctx.Release.Namespace (include "exchange.componentName" $c) }}
  {{- if and $live (hasKey ($live.spec | default dict) "replicas") }}
  replicas: {{ $live.spec.replicas }}
  {{- end }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "exchange.selectorLabels" $c | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 25%
      maxUnavailable: 0
  template:
    metadata:
      labels:
        {{- include "exchange.labels" $c | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        {{- include "exchange.podAnnotations" (dict "context" $ctx "values" $v "config" $config) | nindent 8 }}
    spec:
      {{- include "exchange.podSpecCommon" (dict "context" $ctx "values" $v "component" .component) | nindent 6 }}
      terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
      containers:
        - name: {{ .service }}
          image: {{ include "exchange.image" $ctx }}
          imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
          command: [{{ .service | quote }}]
          ports:
            - name: grpc
              containerPort: {{ $v.port }}
              protocol: TCP
            {{- with include "exchange.metricsPort" $ctx }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- with include "exchange.healthContainerPort" $c }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- if and (eq $c.component "order") $v.admin.enabled (gt (int $v.admin.port) 0) }}
            - name: admin
              containerPort: {{ $v.admin.port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "exchange.componentName" $c }}
          env:
            {{- include "exchange.commonEnv" (dict "context" $ctx "values" $v) | nindent 12 }}
            {{- with include "exchange.tlsEnv" $c }}
            {{- . | nindent 12 }}
            {{- end }}
            {{- include "exchange.pageTokenEnv" $ctx | nindent 12 }}
            {{- if eq $c.component "order" }}
            {{- include "exchange.orderWorkersEnv" (dict "values" $v "container" .service) | nindent 12 }}
            {{- end }}
          {{- include "exchange.grpcProbes" (dict "port" (include "exchange.probePort" (dict "context" $ctx "component" .component "port" $v.port)) "probes" $v.probes) | nindent 10 }}
          {{- with include "exchange.lifecycle" $v }}
          {{- . | nindent 10 }}
          {{- end }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          securityContext:
            {{- toYaml $ctx.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            {{- include "exchange.tmpVolumeMount" $ctx | nindent 12 }}
            {{- include "exchange.tlsVolumeMounts" $c | nindent 12 }}
      volumes:
        {{- include "exchange.tmpVolume" $ctx | nindent 8 }}
        {{- include "exchange.tlsVolumes" $c | nindent 8 }}
{{- end -}}

{{/*
The Service in front of a Deployment: gRPC only, as it may be exposed
(LoadBalancer); metrics are served through "<fullname>-metrics".
*/}}
{{- define "exchange.service" -}}
{{- $ctx := .context -}}
{{- $v := .values -}}
{{- $c := dict "context" $ctx "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "exchange.componentName" $c }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "exchange.labels" $c | nindent 4 }}
  {{- with $v.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $v.service.type }}
  selector:
    {{- include "exchange.selectorLabels" $c | nindent 4 }}
  ports:
    - name: grpc
      port: {{ $v.port }}
      targetPort: grpc
      protocol: TCP
      {{- if not (include "exchange.portTls" $c) }}
      appProtocol: kubernetes.io/h2c
      {{- end }}
{{- end -}}

{{/* A HorizontalPodAutoscaler on CPU, when values.autoscaling.enabled. */}}
{{- define "exchange.hpa" -}}
{{- $ctx := .context -}}
{{- $a := .values.autoscaling -}}
{{- $c := dict "context" $ctx "component" .component -}}
{{- if $a.enabled -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "exchange.componentName" $c }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "exchange.labels" $c | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "exchange.componentName" $c }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
{{- end -}}
{{- end -}}

{{/*
A PodDisruptionBudget, when values.pdb.enabled (any component); minAvailable,
when set, replaces maxUnavailable.
*/}}
{{- define "exchange.pdb" -}}
{{- $ctx := .context -}}
{{- $p := .values.pdb -}}
{{- $c := dict "context" $ctx "component" .component -}}
{{- if $p.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "exchange.componentName" $c }}
  namespace: {{ $ctx.Release.Namespace }}
  labels:
    {{- include "exchange.labels" $c | nindent 4 }}
spec:
  {{- if and (hasKey $p "minAvailable") (not (kindIs "invalid" $p.minAvailable)) }}
  minAvailable: {{ $p.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $p.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "exchange.selectorLabels" $c | nindent 6 }}
{{- end -}}
{{- end -}}


{{/*
EXCHANGE_ORDER_WORKERS: a number as given, or for "auto" the container's CPU (its limit
when it has one, else its request) rounded up to whole cores by the Downward API: a
container sees the node's cores, not its share, so the service's own "auto" would not do.
*/}}
{{- define "exchange.orderWorkersEnv" -}}
{{- $workers := toString .values.config.workers -}}
- name: EXCHANGE_ORDER_WORKERS
{{- if eq $workers "auto" }}
  valueFrom:
    resourceFieldRef:
      containerName: {{ .container }}
      resource: {{ ternary "limits.cpu" "requests.cpu" (hasKey (.values.resources.limits | default dict) "cpu") }}
      divisor: "1"
{{- else }}
  value: {{ $workers | quote }}
{{- end }}
{{- end -}}
