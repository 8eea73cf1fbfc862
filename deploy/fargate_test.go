package deploy_test

import (
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"
)

const taskDefinition = "fargate/task-definition.json"

// decodeTaskDefinition decodes an `aws ecs register-task-definition
// --cli-input-json` document strictly into the SDK's input type.
func decodeTaskDefinition(data []byte) (*ecs.RegisterTaskDefinitionInput, error) {
	var in ecs.RegisterTaskDefinitionInput
	return &in, strictJSON(data, &in)
}

func TestFargateTaskDefinitionStrict(t *testing.T) {
	data, err := os.ReadFile(taskDefinition)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		mutate  func(string) string
		wantErr string
	}{
		{name: "as shipped", mutate: func(s string) string { return s }},
		{name: "typo", mutate: func(s string) string { return strings.Replace(s, `"essential"`, `"essental"`, 1) }, wantErr: "unknown field"},
		{name: "wrong type", mutate: func(s string) string { return strings.Replace(s, `"interval": 10`, `"interval": "10s"`, 1) }, wantErr: "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeTaskDefinition([]byte(tt.mutate(string(data))))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestFargateTaskDefinition(t *testing.T) {
	data, err := os.ReadFile(taskDefinition)
	if err != nil {
		t.Fatal(err)
	}
	td, err := decodeTaskDefinition(data)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(td.RequiresCompatibilities, types.CompatibilityFargate) || td.NetworkMode != types.NetworkModeAwsvpc {
		t.Errorf("not a Fargate task: %v %v", td.RequiresCompatibilities, td.NetworkMode)
	}
	// The agent attests callers by PID: it must see the other containers'.
	if td.PidMode != types.PidModeTask {
		t.Errorf("pidMode %q, want task", td.PidMode)
	}
	if td.TaskRoleArn == nil {
		t.Error("no task role: the aws_iam attestor signs with it")
	}
	volumes := make(map[string]bool)
	for _, v := range td.Volumes {
		volumes[*v.Name] = true
	}
	containers := make(map[string]types.ContainerDefinition)
	for _, c := range td.ContainerDefinitions {
		containers[*c.Name] = c
		for _, m := range c.MountPoints {
			if !volumes[*m.SourceVolume] {
				t.Errorf("container %s mounts undefined volume %s", *c.Name, *m.SourceVolume)
			}
		}
		for _, d := range c.DependsOn {
			if _, ok := containerByName(td, *d.ContainerName); !ok {
				t.Errorf("container %s depends on undefined %s", *c.Name, *d.ContainerName)
			}
		}
	}
	agent, ok := containers["hallmark-agent"]
	if !ok || agent.Essential == nil || !*agent.Essential {
		t.Fatal("no essential hallmark-agent container")
	}
	if agent.HealthCheck == nil || !slices.Contains(agent.HealthCheck.Command, "healthcheck") {
		t.Error("hallmark-agent has no healthcheck command")
	}
	if agent.ReadonlyRootFilesystem == nil || !*agent.ReadonlyRootFilesystem {
		t.Error("hallmark-agent: root filesystem should be read-only")
	}

	// The configuration the init container writes parses with the real
	// agent parser.
	cfgc, ok := containers["hallmark-config"]
	if !ok {
		t.Fatal("no hallmark-config container")
	}
	var hcl string
	for _, e := range cfgc.Environment {
		if *e.Name == "AGENT_HCL" {
			hcl = *e.Value
		}
	}
	f := parseAgentHCL(t, taskDefinition+":AGENT_HCL", []byte(hcl))
	if f.NodeAttestor.Kind != "aws_iam" {
		t.Errorf("node attestor %q, want aws_iam", f.NodeAttestor.Kind)
	}
	if !dependsOn(agent, "hallmark-config", types.ContainerConditionSuccess) {
		t.Error("hallmark-agent does not wait for hallmark-config to succeed")
	}
	if !mountedAt(agent, "hallmark-config", path.Dir(f.TrustBundlePath)) {
		t.Errorf("trust bundle %s is not on the hallmark-config volume", f.TrustBundlePath)
	}

	// The app reaches the socket through a shared volume and starts once
	// the agent is healthy.
	app, ok := containers["app"]
	if !ok {
		t.Fatal("no app container")
	}
	sockDir := path.Dir(f.SocketPath)
	if !mountedAt(agent, "hallmark-sockets", sockDir) || !mountedAt(app, "hallmark-sockets", sockDir) {
		t.Errorf("socket directory %s is not shared by agent and app", sockDir)
	}
	if !dependsOn(app, "hallmark-agent", types.ContainerConditionHealthy) {
		t.Error("app does not wait for a healthy agent")
	}
	var endpoint string
	for _, e := range app.Environment {
		if *e.Name == "SPIFFE_ENDPOINT_SOCKET" {
			endpoint = *e.Value
		}
	}
	if endpoint != "unix://"+f.SocketPath {
		t.Errorf("SPIFFE_ENDPOINT_SOCKET %q, want unix://%s", endpoint, f.SocketPath)
	}
}

func containerByName(td *ecs.RegisterTaskDefinitionInput, name string) (types.ContainerDefinition, bool) {
	for _, c := range td.ContainerDefinitions {
		if *c.Name == name {
			return c, true
		}
	}
	return types.ContainerDefinition{}, false
}

func dependsOn(c types.ContainerDefinition, name string, cond types.ContainerCondition) bool {
	for _, d := range c.DependsOn {
		if *d.ContainerName == name && d.Condition == cond {
			return true
		}
	}
	return false
}

func mountedAt(c types.ContainerDefinition, volume, dir string) bool {
	for _, m := range c.MountPoints {
		if *m.SourceVolume == volume && *m.ContainerPath == dir {
			return true
		}
	}
	return false
}

// TestFargateBundlePolicy: the server's IAM policy lets it read and write
// exactly the parameter the task definition's config container reads, and
// nothing else.
func TestFargateBundlePolicy(t *testing.T) {
	data, err := os.ReadFile(taskDefinition)
	if err != nil {
		t.Fatal(err)
	}
	td, err := decodeTaskDefinition(data)
	if err != nil {
		t.Fatal(err)
	}
	var read []string
	for _, c := range td.ContainerDefinitions {
		for _, s := range c.Secrets {
			if s.Name != nil && *s.Name == "TRUST_BUNDLE" && s.ValueFrom != nil {
				read = append(read, *s.ValueFrom)
			}
		}
	}
	if len(read) != 1 {
		t.Fatalf("the task definition reads the bundle from %v, want one SSM parameter", read)
	}
	pol, err := os.ReadFile("fargate/server-bundle-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Version   string
		Statement []struct {
			Sid      string
			Effect   string
			Action   []string
			Resource string
		}
	}
	if err := strictJSON(pol, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Statement) != 1 {
		t.Fatalf("%d statements", len(doc.Statement))
	}
	st := doc.Statement[0]
	if st.Effect != "Allow" || st.Resource != read[0] ||
		!slices.Equal(st.Action, []string{"ssm:GetParameter", "ssm:PutParameter"}) {
		t.Errorf("policy %+v: want Allow ssm:GetParameter, ssm:PutParameter on %s", st, read[0])
	}
}
