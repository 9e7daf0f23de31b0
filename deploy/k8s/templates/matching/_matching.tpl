{{/*
Instrument assignment of the matching StatefulSet.

Pod N (N = the ordinal at the end of its name) owns instrumentGroups[N]; pods
past the groups are standbys that may own any group's instruments. With no
groups, one pod owns every instrument ("*") and the standbys may too.
The per-ordinal lists live in the "<fullname>-matching-instruments" ConfigMap
(keys group-<N> and standby), mounted into the pod; the container's entrypoint
("exchange.matchingEntrypoint") reads its own key and exports
EXCHANGE_MATCHING_INSTRUMENTS, EXCHANGE_MATCHING_HOME (its group; "" for a standby) and
EXCHANGE_MATCHING_NAME (the pod's name) before it execs matching-service.
*/}}

{{/* The symbols exchange-migrate seeds (exchange_common/db.py DEFAULT_INSTRUMENTS). */}}
{{- define "exchange.seededInstruments" -}}
BTC-USD ETH-USD
{{- end -}}

{{/*
The ConfigMap data: group-<N> per group, and standby. Fails on an instrument in two
groups, and on one that neither the migrate Job's seed nor `instruments` provides (it
would exist nowhere, and its pod would own nothing); not checked without the Job
(migrations.enabled false: whoever migrates makes the instruments).
*/}}
{{- define "exchange.matchingInstrumentFiles" -}}
{{- $groups := .Values.matching.instrumentGroups -}}
{{- if not $groups -}}
group-0: "*"
standby: "*"
{{- else -}}
{{- $known := splitList " " (include "exchange.seededInstruments" .) -}}
{{- range .Values.instruments -}}
{{- $known = append $known .symbol -}}
{{- end -}}
{{- $seen := dict -}}
{{- $all := list -}}
{{- range $i, $group := $groups -}}
{{- range $group -}}
{{- if hasKey $seen . -}}
{{- fail (printf "matching.instrumentGroups: %s is in groups %v and %d; an instrument has one owner" . (get $seen .) $i) -}}
{{- end -}}
{{- if and $.Values.migrations.enabled (not (has . $known)) -}}
{{- fail (printf "matching.instrumentGroups: %s (group %d) is not an instrument the chart creates: the migrate Job seeds %s, and makes those of `instruments`. Add %s to `instruments` with its rules, or as {symbol: %s} alone if it was made with the admin API" . $i (join ", " (splitList " " (include "exchange.seededInstruments" $))) . .) -}}
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
The container's shell entrypoint: group-<ordinal> if this pod owns a group (its
instruments and its home), else standby (any group's instruments, no home); its name is
the pod's. Then exec, so matching-service is PID 1 and gets SIGTERM.
*/}}
{{- define "exchange.matchingEntrypoint" -}}
set -eu
ordinal="${POD_NAME##*-}"
file="${MATCHING_INSTRUMENTS_DIR}/group-${ordinal}"
EXCHANGE_MATCHING_HOME=""
if [ -f "$file" ]; then
  EXCHANGE_MATCHING_HOME="$(cat "$file")"
else
  file="${MATCHING_INSTRUMENTS_DIR}/standby"
fi
EXCHANGE_MATCHING_INSTRUMENTS="$(cat "$file")"
EXCHANGE_MATCHING_NAME="$POD_NAME"
export EXCHANGE_MATCHING_INSTRUMENTS EXCHANGE_MATCHING_HOME EXCHANGE_MATCHING_NAME
exec matching-service
{{- end -}}
