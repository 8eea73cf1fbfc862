package awsiam_test

import (
	"context"
	"strings"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/hallmarkid/hallmark/attestors"
	"github.com/hallmarkid/hallmark/attestors/awsiam"
	"github.com/hallmarkid/hallmark/attestors/awsiam/awsfake"
)

// TestRelayAcrossTrustDomains relays the server's challenge to an agent of
// another deployment: a server of trust domain B (or anyone who can make a
// victim agent answer) passes server A's challenge to an agent of B, which
// signs it, and hands the signed request back to A. The signed request must
// name the server it was made for, so A refuses what was signed for B.
func TestRelayAcrossTrustDomains(t *testing.T) {
	tdA := spiffeid.RequireTrustDomainFromString("a.example")
	tdB := spiffeid.RequireTrustDomainFromString("b.example")
	tests := []struct {
		name     string
		agentTD  spiffeid.TrustDomain // the agent's configured trust domain
		agentID  string               // agent server_id override
		serverID string               // server server_id override
		wantErr  string
	}{
		{name: "signed for B, relayed to A", agentTD: tdB, wantErr: "challenge header names spiffe://b.example/hallmark/server, this server is spiffe://a.example/hallmark/server"},
		{name: "signed for A", agentTD: tdA},
		{name: "override on both halves", agentTD: tdB, agentID: "hallmark-prod-eu", serverID: "hallmark-prod-eu"},
		{name: "override on the server only", agentTD: tdA, serverID: "hallmark-prod-eu", wantErr: "names spiffe://a.example/hallmark/server, this server is hallmark-prod-eu"},
		{name: "override on the agent only", agentTD: tdA, agentID: "hallmark-prod-eu", wantErr: "names hallmark-prod-eu, this server is spiffe://a.example/hallmark/server"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sts := awsfake.NewSTS(t, taskRole)
			v, err := awsiam.NewVerifier(awsiam.ServerConfig{AccountIDs: []string{account}, STSURLOverride: sts.URL, ServerID: tc.serverID}, quietLog())
			if err != nil {
				t.Fatal(err)
			}
			c, err := awsiam.NewCollector(awsiam.AgentConfig{Region: "us-east-1", TrustDomain: tc.agentTD, ServerID: tc.agentID}, quietLog(),
				awsiam.WithCredentials(staticCreds(agentCreds)))
			if err != nil {
				t.Fatal(err)
			}
			payload, err := c.Payload(context.Background(), attestors.CollectRequest{})
			if err != nil {
				t.Fatal(err)
			}
			res, err := v.Verify(context.Background(), attestors.VerifyRequest{
				Payload: payload, TrustDomain: tdA, Challenge: c.Answer,
			})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				if n := sts.Conns.Load(); n != 0 {
					t.Errorf("STS saw %d connections for a relayed request", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.AgentID.TrustDomain() != tdA {
				t.Errorf("agent ID %s", res.AgentID)
			}
		})
	}
}
