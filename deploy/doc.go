// Package deploy holds no code: it is where the deployment material lives
// (kubernetes/ kustomize base and overlays, helm/hallmark the Helm chart,
// crds/ the registrar's CRDs, istio/, systemd/, fargate/,
// docker/, prometheus/ alert rules, grafana/ dashboard), and its tests
// check that material against the real types and parsers: the alert rules
// parse with Prometheus's rulefmt and every query of the rules and the
// dashboard with its PromQL parser, naming only series the daemons export
// (internal/telemetry); every Kubernetes manifest decodes strictly into k8s.io/api
// types (the Helm chart rendered with the Helm SDK for several value sets;
// pod templates in restricted namespaces pass the real Pod Security
// admission checks), every embedded HCL configuration parses with server/config and
// agent/config (attestor blocks with their attestor's configuration type),
// the ECS task definition decodes strictly into the AWS SDK's
// RegisterTaskDefinitionInput, and the systemd units and Dockerfiles carry
// the settings the documentation promises (docs/operations.md).
//
// Non-test code must not import anything; the tests may import the
// configuration packages they validate against.
package deploy
