{{/*
Instrument assignment of the matching StatefulSet.

Pod N (N = the ordinal at the end of its name) owns instrumentGroups[N]; pods
past the groups are standbys that may own any group's instruments. With no
groups, one pod owns every instrument ("*") and the standbys may too.
The per-ordinal lists live in the "<fullname>-matching-instruments" ConfigMap
(keys group-<N> and standby), mounted into the pod; the container's entrypoint
("exchange.matchingEntrypoint") reads its own key and exports
EXCHANGE_MATCHING_INSTRUMENTS before it execs matching-service.
*/}}

{{/* The ConfigMap data: group-<N> per group, and standby. Fails on an instrument in two groups. */}}
{{- define "exchange.matchingInstrumentFiles" -}}
{{- $groups := .Values.matching.instrumentGroups -}}
{{- if not $groups -}}
group-0: "*"
standby: "*"
{{- else -}}
{{- $seen := dict -}}
{{- $all := list -}}
{{- range $i, $group := $groups -}}
{{- range $group -}}
{{- if hasKey $seen . -}}
{{- fail (printf "matching.instrumentGroups: %s is in groups %v and %d; an instrument has one owner" . (get $seen .) $i) -}}
{{- end -}}
{{- $_ := set $seen . $i -}}
{{- $all = append $all . -}}
{{- end }}
group-{{ $i }}: {{ join "," $group | quote }}
{{- end }}
standby: {{ join "," $all | quote }}
{{- end -}}
{{- end -}}

{{/* replicas = max(len(instrumentGroups), 1) + standbys */}}
{{- define "exchange.matchingReplicas" -}}
{{- max (len .Values.matching.instrumentGroups) 1 | add (int .Values.matching.standbys) -}}
{{- end -}}

{{/* Where the instruments ConfigMap is mounted. */}}
{{- define "exchange.matchingInstrumentsDir" -}}
/etc/exchange/instruments
{{- end -}}

{{/*
The container's shell entrypoint: group-<ordinal> if this pod owns a group,
else standby; then exec, so matching-service is PID 1 and gets SIGTERM.
*/}}
{{- define "exchange.matchingEntrypoint" -}}
set -eu
ordinal="${POD_NAME##*-}"
file="${MATCHING_INSTRUMENTS_DIR}/group-${ordinal}"
[ -f "$file" ] || file="${MATCHING_INSTRUMENTS_DIR}/standby"
EXCHANGE_MATCHING_INSTRUMENTS="$(cat "$file")"
export EXCHANGE_MATCHING_INSTRUMENTS
exec matching-service
{{- end -}}
