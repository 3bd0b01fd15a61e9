{{/*
The chart name, overridable with nameOverride.
*/}}
{{- define "alm-kafka-bridge.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full resource name: <release>-<chart> unless the release name already contains the chart
name. Truncated to 63 characters, the limit of Kubernetes names and label values.
*/}}
{{- define "alm-kafka-bridge.fullname" -}}
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

{{/*
chart-version, for the helm.sh/chart label.
*/}}
{{- define "alm-kafka-bridge.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every resource. app.kubernetes.io/part-of is constant: the ServiceMonitor uses it
as the Prometheus job name, which the alert rules match.
*/}}
{{- define "alm-kafka-bridge.labels" -}}
helm.sh/chart: {{ include "alm-kafka-bridge.chart" . }}
{{ include "alm-kafka-bridge.selectorLabels" . }}
app.kubernetes.io/version: {{ include "alm-kafka-bridge.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: webhook-receiver
app.kubernetes.io/part-of: alm-kafka-bridge
{{- end }}

{{/*
Selector labels: only labels that never change during the life of a release.
*/}}
{{- define "alm-kafka-bridge.selectorLabels" -}}
app.kubernetes.io/name: {{ include "alm-kafka-bridge.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The ServiceAccount's name.
*/}}
{{- define "alm-kafka-bridge.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "alm-kafka-bridge.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The image tag (appVersion unless image.tag is set).
*/}}
{{- define "alm-kafka-bridge.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/*
The image reference; a digest wins over the tag.
*/}}
{{- define "alm-kafka-bridge.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "alm-kafka-bridge.imageTag" .) }}
{{- end }}
{{- end }}

{{/*
Where things are mounted in the container.
*/}}
{{- define "alm-kafka-bridge.configDir" -}}/etc/alm-bridge/config{{- end }}
{{- define "alm-kafka-bridge.configFile" -}}{{ include "alm-kafka-bridge.configDir" . }}/receivers.yaml{{- end }}
{{- define "alm-kafka-bridge.secretsDir" -}}/etc/alm-bridge/secrets{{- end }}
{{- define "alm-kafka-bridge.kafkaTlsDir" -}}/etc/alm-bridge/kafka-tls{{- end }}
{{- define "alm-kafka-bridge.httpsDir" -}}/etc/alm-bridge/https{{- end }}

{{/*
The receivers file (BRIDGE_CONFIG_FILE): the receivers values as they are, which the bridge
reads in the chart's own field names (secretKeys, topicTemplate, deadLetter, ...; empty
values keep the bridge's defaults), and secrets_dir, where each receiver's secret keys are
mounted as files (<secretsDir>/<name>/<key>). Secrets appear only as key names, never as
values.
*/}}
{{- define "alm-kafka-bridge.receiversYaml" -}}
{{- toYaml (dict "secrets_dir" (include "alm-kafka-bridge.secretsDir" .) "receivers" .Values.receivers) }}
{{- end }}

{{/*
A receiver's authentication method (the receiver is the context): auth.method, else the one
its keys imply (secretKeys: hmac, credentialKeys: basic), else nothing, which the chart and
the bridge refuse. Accepting unauthenticated batches takes an explicit auth.method none.
*/}}
{{- define "alm-kafka-bridge.authMethod" -}}
{{- $auth := .auth | default dict }}
{{- if $auth.method }}
{{- $auth.method }}
{{- else if and $auth.secretKeys (not $auth.credentialKeys) }}
{{- print "hmac" }}
{{- else if and $auth.credentialKeys (not $auth.secretKeys) }}
{{- print "basic" }}
{{- end }}
{{- end }}

{{/*
Checks that cannot be expressed in values.schema.json. Included by the Deployment so that
`helm template`, `helm lint` and `helm install` all stop with a clear message.
*/}}
{{- define "alm-kafka-bridge.validate" -}}
{{- $grace := int .Values.terminationGracePeriodSeconds }}
{{- $shutdown := int .Values.config.shutdownTimeoutSeconds }}
{{- $preStop := int .Values.lifecycle.preStopSleepSeconds }}
{{- if le $grace (add $shutdown $preStop) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be greater than config.shutdownTimeoutSeconds (%d) + lifecycle.preStopSleepSeconds (%d), or Kubernetes kills pods before in-flight batches are answered" $grace $shutdown $preStop) }}
{{- end }}
{{- if not .Values.receivers }}
{{- fail "receivers must list at least one receiver" }}
{{- end }}
{{- $seen := dict }}
{{- range .Values.receivers }}
{{- if hasKey $seen .name }}
{{- fail (printf "receivers: the name %q is used twice" .name) }}
{{- end }}
{{- $_ := set $seen .name true }}
{{- $auth := .auth | default dict }}
{{- $method := include "alm-kafka-bridge.authMethod" . }}
{{- if and $auth.secretKeys $auth.credentialKeys }}
{{- fail (printf "receivers[%s]: auth.secretKeys (hmac) and auth.credentialKeys (basic) are both set: a receiver authenticates one way; keep only the one its ALM webhook uses" .name) }}
{{- end }}
{{- if not $method }}
{{- fail (printf "receivers[%s]: no authentication is configured: set auth.existingSecret and auth.secretKeys (hmac, ALM's \"Signature\") or auth.credentialKeys (basic), or auth.method: none to accept unauthenticated batches deliberately" .name) }}
{{- end }}
{{- if and (eq $method "none") (or $auth.secretKeys $auth.credentialKeys) }}
{{- fail (printf "receivers[%s]: auth.method none contradicts auth.%s: remove auth.method (the keys imply it), or the keys to accept unauthenticated batches" .name (ternary "secretKeys" "credentialKeys" (not (empty $auth.secretKeys)))) }}
{{- end }}
{{- if and (eq $method "basic") $auth.secretKeys }}
{{- fail (printf "receivers[%s]: auth.method basic contradicts auth.secretKeys (hmac secrets): set auth.method hmac (or leave it empty), or give auth.credentialKeys in their place" .name) }}
{{- end }}
{{- if and (eq $method "hmac") $auth.credentialKeys }}
{{- fail (printf "receivers[%s]: auth.method hmac contradicts auth.credentialKeys (basic credentials): set auth.method basic (or leave it empty), or give auth.secretKeys in their place" .name) }}
{{- end }}
{{- if and (eq $method "hmac") (not (and $auth.existingSecret $auth.secretKeys)) }}
{{- fail (printf "receivers[%s]: auth.method hmac needs auth.existingSecret and auth.secretKeys" .name) }}
{{- end }}
{{- if and (eq $method "basic") (not (and $auth.existingSecret $auth.credentialKeys)) }}
{{- fail (printf "receivers[%s]: auth.method basic needs auth.existingSecret and auth.credentialKeys" .name) }}
{{- end }}
{{- if and (eq $method "none") $.Values.ingress.enabled (not $auth.allowUnauthenticated) }}
{{- fail (printf "receivers[%s]: auth.method none behind an Ingress lets anyone publish to Kafka; use basic or hmac, or set auth.allowUnauthenticated: true" .name) }}
{{- end }}
{{- end }}
{{- $sasl := .Values.kafka.sasl }}
{{- $protocol := .Values.kafka.securityProtocol }}
{{- if hasPrefix "SASL_" $protocol }}
{{- if not (and $sasl.mechanism $sasl.existingSecret) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.mechanism and kafka.sasl.existingSecret" $protocol) }}
{{- end }}
{{- if not (or $sasl.username $sasl.usernameKey) }}
{{- fail (printf "kafka.securityProtocol %s needs kafka.sasl.username or kafka.sasl.usernameKey" $protocol) }}
{{- end }}
{{- end }}
{{- $tls := .Values.kafka.tls }}
{{- if and $tls.existingSecret (not (or (eq $protocol "SSL") (eq $protocol "SASL_SSL"))) }}
{{- fail (printf "kafka.tls.existingSecret is set but kafka.securityProtocol is %s (use SSL or SASL_SSL)" $protocol) }}
{{- end }}
{{- if ne (empty $tls.certKey) (empty $tls.keyKey) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS needs both)" }}
{{- end }}
{{- if and (or $tls.certKey $tls.keyKey) (not $tls.existingSecret) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey need kafka.tls.existingSecret" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.hosts) }}
{{- fail "ingress.enabled needs at least one entry in ingress.hosts" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must not be below autoscaling.minReplicas" }}
{{- end }}
{{- end }}

{{/*
The BRIDGE_KAFKA_* variables: the bridge and the canary reach Kafka the same way.
*/}}
{{- define "alm-kafka-bridge.kafkaEnv" -}}
{{- $fullname := include "alm-kafka-bridge.fullname" . }}
{{- $kafkaTlsDir := include "alm-kafka-bridge.kafkaTlsDir" . }}
{{- $kafka := .Values.kafka }}
{{- $tls := $kafka.tls }}
- name: BRIDGE_KAFKA_BOOTSTRAP_SERVERS
  value: {{ $kafka.bootstrapServers | quote }}
- name: BRIDGE_KAFKA_CLIENT_ID
  value: {{ $kafka.clientId | default $fullname | quote }}
- name: BRIDGE_KAFKA_SECURITY_PROTOCOL
  value: {{ $kafka.securityProtocol | quote }}
{{- with $kafka.compressionType }}
- name: BRIDGE_KAFKA_COMPRESSION_TYPE
  value: {{ . | quote }}
{{- end }}
{{- if not (kindIs "invalid" $kafka.lingerMs) }}
- name: BRIDGE_KAFKA_LINGER_MS
  value: {{ $kafka.lingerMs | int64 | quote }}
{{- end }}
{{- if not (kindIs "invalid" $kafka.requestTimeoutMs) }}
- name: BRIDGE_KAFKA_REQUEST_TIMEOUT_MS
  value: {{ $kafka.requestTimeoutMs | int64 | quote }}
{{- end }}
- name: BRIDGE_KAFKA_AUTO_CREATE_TOPICS
  value: {{ $kafka.autoCreateTopics | quote }}
- name: BRIDGE_KAFKA_TOPIC_PARTITIONS
  value: {{ $kafka.topicPartitions | int64 | quote }}
- name: BRIDGE_KAFKA_TOPIC_REPLICATION_FACTOR
  value: {{ $kafka.topicReplicationFactor | int64 | quote }}
- name: BRIDGE_KAFKA_MAX_TOPICS
  value: {{ $kafka.maxTopics | int64 | quote }}
{{- if hasPrefix "SASL_" $kafka.securityProtocol }}
- name: BRIDGE_KAFKA_SASL_MECHANISM
  value: {{ $kafka.sasl.mechanism | quote }}
{{- if $kafka.sasl.usernameKey }}
- name: BRIDGE_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $kafka.sasl.existingSecret }}
      key: {{ $kafka.sasl.usernameKey }}
{{- else }}
- name: BRIDGE_KAFKA_SASL_USERNAME
  value: {{ $kafka.sasl.username | quote }}
{{- end }}
- name: BRIDGE_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $kafka.sasl.existingSecret }}
      key: {{ $kafka.sasl.passwordKey }}
{{- end }}
{{- if or (eq $kafka.securityProtocol "SSL") (eq $kafka.securityProtocol "SASL_SSL") }}
- name: BRIDGE_KAFKA_SSL_CHECK_HOSTNAME
  value: {{ $tls.checkHostname | quote }}
{{- if and $tls.existingSecret $tls.caKey }}
- name: BRIDGE_KAFKA_SSL_CAFILE
  value: {{ printf "%s/%s" $kafkaTlsDir $tls.caKey | quote }}
{{- end }}
{{- if and $tls.existingSecret $tls.certKey }}
- name: BRIDGE_KAFKA_SSL_CERTFILE
  value: {{ printf "%s/%s" $kafkaTlsDir $tls.certKey | quote }}
- name: BRIDGE_KAFKA_SSL_KEYFILE
  value: {{ printf "%s/%s" $kafkaTlsDir $tls.keyKey | quote }}
{{- end }}
{{- end }}
{{- end }}
