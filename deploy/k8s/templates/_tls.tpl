{{/*
TLS and service-to-service authentication (see exchange_common/tls.py).

Public ports (order, marketdata): with tls.enabled the pods mount tls.existingSecret
(tls.crt, tls.key) read-only at /etc/exchange/tls and, with tls.clientCaSecret, its
ca.crt at /etc/exchange/client-ca (client certificates required).

Order -> matching: with internalTls.enabled, mutual TLS. internalTls.existingSecret
holds ca.crt, order.crt, order.key, matching.crt, matching.key; each pod mounts only
the CA and its own pair at /etc/exchange/internal-tls (as tls.crt / tls.key).
Otherwise a shared token (EXCHANGE_INTERNAL_TOKEN) from internalAuth.existingSecret or
the chart's own Secret.

A component whose gRPC port speaks TLS is probed on a plaintext health-only port
(healthPort, EXCHANGE_HEALTH_LISTEN): Kubernetes gRPC probes cannot speak TLS.
All take (dict "context" $ "component" "order").
*/}}

{{- define "exchange.tlsDir" -}}/etc/exchange/tls{{- end -}}
{{- define "exchange.clientCaDir" -}}/etc/exchange/client-ca{{- end -}}
{{- define "exchange.internalTlsDir" -}}/etc/exchange/internal-tls{{- end -}}

{{/* "true" when the component's own gRPC port speaks TLS, else "". */}}
{{- define "exchange.portTls" -}}
{{- $v := .context.Values -}}
{{- if has .component (list "order" "marketdata") -}}
{{- if $v.tls.enabled }}true{{ end -}}
{{- else if eq .component "matching" -}}
{{- if $v.internalTls.enabled }}true{{ end -}}
{{- end -}}
{{- end -}}

{{/* "true" when the component takes part in order -> matching authentication. */}}
{{- define "exchange.internalAuthUser" -}}
{{- if has .component (list "order" "matching") }}true{{ end -}}
{{- end -}}

{{/* The port the probes use: the health-only port when the gRPC port speaks TLS. */}}
{{- define "exchange.probePort" -}}
{{- if include "exchange.portTls" . -}}
{{- .context.Values.healthPort -}}
{{- else -}}
{{- .port -}}
{{- end -}}
{{- end -}}

{{/* The health container port, when the probes need it. */}}
{{- define "exchange.healthContainerPort" -}}
{{- if include "exchange.portTls" . -}}
- name: health
  containerPort: {{ .context.Values.healthPort }}
  protocol: TCP
{{- end -}}
{{- end -}}

{{/* The Secret holding the internal token. */}}
{{- define "exchange.pageTokenSecretName" -}}
{{- default (include "exchange.suffixedName" (dict "context" . "suffix" "page-tokens")) .Values.pageTokens.existingSecret -}}
{{- end -}}

{{/* Container env of the public services: the page token key from its Secret. */}}
{{- define "exchange.pageTokenEnv" -}}
{{- $v := .Values -}}
- name: EXCHANGE_PAGE_TOKEN_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "exchange.pageTokenSecretName" . }}
      key: {{ ternary $v.pageTokens.existingSecretKey "page-token-key" (ne $v.pageTokens.existingSecret "") }}
{{- end -}}

{{- define "exchange.internalTokenSecretName" -}}
{{- default (include "exchange.suffixedName" (dict "context" . "suffix" "internal-auth")) .Values.internalAuth.existingSecret -}}
{{- end -}}

{{/* Fails rendering when a TLS setting lacks its Secret. */}}
{{- define "exchange.tlsCheck" -}}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) -}}
{{- fail "tls.enabled needs tls.existingSecret (a Secret with tls.crt and tls.key)" -}}
{{- end -}}
{{- if and .Values.tls.clientCaSecret (not .Values.tls.enabled) -}}
{{- fail "tls.clientCaSecret needs tls.enabled" -}}
{{- end -}}
{{- if and .Values.internalTls.enabled (not .Values.internalTls.existingSecret) -}}
{{- fail "internalTls.enabled needs internalTls.existingSecret (ca.crt, order.crt, order.key, matching.crt, matching.key)" -}}
{{- end -}}
{{- end -}}

{{/* ConfigMap entries: the TLS file paths and the health port. */}}
{{- define "exchange.tlsConfig" -}}
{{- $ctx := .context -}}
{{- $v := $ctx.Values -}}
{{- include "exchange.tlsCheck" $ctx -}}
{{- if and $v.tls.enabled (has .component (list "order" "marketdata")) }}
EXCHANGE_TLS_CERT_FILE: {{ printf "%s/tls.crt" (include "exchange.tlsDir" .) | quote }}
EXCHANGE_TLS_KEY_FILE: {{ printf "%s/tls.key" (include "exchange.tlsDir" .) | quote }}
{{- if $v.tls.clientCaSecret }}
EXCHANGE_TLS_CLIENT_CA_FILE: {{ printf "%s/ca.crt" (include "exchange.clientCaDir" .) | quote }}
{{- end }}
{{- end }}
{{- if and $v.internalTls.enabled (include "exchange.internalAuthUser" .) }}
EXCHANGE_INTERNAL_TLS_CERT_FILE: {{ printf "%s/tls.crt" (include "exchange.internalTlsDir" .) | quote }}
EXCHANGE_INTERNAL_TLS_KEY_FILE: {{ printf "%s/tls.key" (include "exchange.internalTlsDir" .) | quote }}
EXCHANGE_INTERNAL_TLS_CA_FILE: {{ printf "%s/ca.crt" (include "exchange.internalTlsDir" .) | quote }}
{{- if eq .component "order" }}
{{- with $v.internalTls.serverName }}
EXCHANGE_INTERNAL_TLS_SERVER_NAME: {{ . | quote }}
{{- end }}
{{- else }}
EXCHANGE_INTERNAL_ALLOWED_CLIENTS: {{ join "," $v.internalTls.allowedClients | quote }}
{{- end }}
{{- end }}
{{- if include "exchange.portTls" . }}
EXCHANGE_HEALTH_LISTEN: {{ printf "0.0.0.0:%d" (int $v.healthPort) | quote }}
{{- end }}
{{- end -}}

{{/* Container env: the internal token, when internal TLS is off. */}}
{{- define "exchange.tlsEnv" -}}
{{- $v := .context.Values -}}
{{- if and (not $v.internalTls.enabled) (include "exchange.internalAuthUser" .) -}}
- name: EXCHANGE_INTERNAL_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "exchange.internalTokenSecretName" .context }}
      key: {{ ternary $v.internalAuth.existingSecretKey "internal-token" (ne $v.internalAuth.existingSecret "") }}
{{- end -}}
{{- end -}}

{{- define "exchange.tlsVolumeMounts" -}}
{{- $v := .context.Values -}}
{{- if and $v.tls.enabled (has .component (list "order" "marketdata")) }}
- name: tls
  mountPath: {{ include "exchange.tlsDir" . }}
  readOnly: true
{{- if $v.tls.clientCaSecret }}
- name: client-ca
  mountPath: {{ include "exchange.clientCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- if and $v.internalTls.enabled (include "exchange.internalAuthUser" .) }}
- name: internal-tls
  mountPath: {{ include "exchange.internalTlsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "exchange.tlsVolumes" -}}
{{- $v := .context.Values -}}
{{- if and $v.tls.enabled (has .component (list "order" "marketdata")) }}
- name: tls
  secret:
    secretName: {{ $v.tls.existingSecret }}
    defaultMode: 0440
    items:
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- with $v.tls.clientCaSecret }}
- name: client-ca
  secret:
    secretName: {{ . }}
    defaultMode: 0440
    items:
      - {key: ca.crt, path: ca.crt}
{{- end }}
{{- end }}
{{- if and $v.internalTls.enabled (include "exchange.internalAuthUser" .) }}
- name: internal-tls
  secret:
    secretName: {{ $v.internalTls.existingSecret }}
    defaultMode: 0440
    # Only the CA and this component's own certificate and key.
    items:
      - {key: ca.crt, path: ca.crt}
      - {key: {{ printf "%s.crt" .component }}, path: tls.crt}
      - {key: {{ printf "%s.key" .component }}, path: tls.key}
{{- end }}
{{- end -}}
