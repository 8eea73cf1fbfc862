package bundlepub

import (
	"context"
	"errors"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
)

// SSMAPI is the part of the SSM client SSMParameter uses.
type SSMAPI interface {
	GetParameter(ctx context.Context, in *ssm.GetParameterInput, opts ...func(*ssm.Options)) (*ssm.GetParameterOutput, error)
	PutParameter(ctx context.Context, in *ssm.PutParameterInput, opts ...func(*ssm.Options)) (*ssm.PutParameterOutput, error)
}

// SSMParameter publishes the bundle as the value of an AWS Systems
// Manager parameter (what an ECS/Fargate task definition reads with
// "secrets": [{"valueFrom": "arn:aws:ssm:...:parameter/..."}]): it reads
// the parameter (GetParameter, decrypted) and, when the value differs,
// writes it with PutParameter and Overwrite. The server's AWS identity
// needs ssm:GetParameter and ssm:PutParameter on that parameter (and
// kms:Encrypt/Decrypt for a SecureString).
type SSMParameter struct {
	Client SSMAPI
	Name   string
	Type   ssmtypes.ParameterType // String or SecureString
	Tier   ssmtypes.ParameterTier // Standard (4 KB), Advanced or Intelligent-Tiering
}

func (s *SSMParameter) String() string { return "aws_ssm " + s.Name }

// Publish implements Target.
func (s *SSMParameter) Publish(ctx context.Context, content []byte) (bool, error) {
	if s.Tier == ssmtypes.ParameterTierStandard && len(content) > 4096 {
		return false, fmt.Errorf("bundlepub: %s: the bundle is %d bytes, more than a Standard parameter holds (4096): set tier = \"Intelligent-Tiering\" or \"Advanced\"", s, len(content))
	}
	out, err := s.Client.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(s.Name), WithDecryption: aws.Bool(true)})
	var nf *ssmtypes.ParameterNotFound
	switch {
	case errors.As(err, &nf):
	case err != nil:
		return false, fmt.Errorf("bundlepub: %s: get: %w", s, err)
	case out.Parameter != nil && aws.ToString(out.Parameter.Value) == string(content) && out.Parameter.Type == s.Type:
		return false, nil
	}
	_, err = s.Client.PutParameter(ctx, &ssm.PutParameterInput{
		Name: aws.String(s.Name), Value: aws.String(string(content)), Type: s.Type, Tier: s.Tier, Overwrite: aws.Bool(true),
	})
	if err != nil {
		return false, fmt.Errorf("bundlepub: %s: put: %w", s, err)
	}
	return true, nil
}
