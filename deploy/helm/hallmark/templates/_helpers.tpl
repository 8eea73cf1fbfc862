{{/* Object names start with the release name: hallmark-server, hallmark-agent, ... */}}
{{- define "hallmark.fullname" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "hallmark.labels" -}}
app.kubernetes.io/part-of: hallmark
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* Selector labels: never change them (selectors are immutable). */}}
{{- define "hallmark.selector" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end -}}

{{- define "hallmark.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The server's SPIFFE ID, the default audience of agents' tokens. */}}
{{- define "hallmark.serverID" -}}
{{- printf "spiffe://%s/hallmark/server" .Values.trustDomain -}}
{{- end -}}

{{/* Checks that no value set can render a broken deployment. */}}
{{- define "hallmark.validate" -}}
{{- if and (eq .Values.server.datastore.type "sqlite") (gt (int .Values.server.replicas) 1) -}}
{{- fail "server.replicas > 1 needs server.datastore.type = postgres: SQLite is one server's file" -}}
{{- end -}}
{{- if and .Values.istio.enabled (eq .Values.agent.socketDir .Values.agent.sdsSocketDir) -}}
{{- fail "agent.socketDir and agent.sdsSocketDir must differ: each socket needs a directory of its own" -}}
{{- end -}}
{{- if and .Values.istio.enabled (not .Values.csi.enabled) -}}
{{- fail "istio.enabled needs csi.enabled: istio-proxy mounts the SDS socket through the CSI driver" -}}
{{- end -}}
{{- if and .Values.csi.enabled (eq .Values.csi.pluginName .Values.csi.sdsPluginName) -}}
{{- fail "csi.pluginName and csi.sdsPluginName must differ" -}}
{{- end -}}
{{- end -}}
