package ec2describe

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/hallmarkid/hallmark/attestors/awsiid"
)

// Config configures a Describer.
type Config struct {
	// AWS is the SDK configuration (credentials, HTTP client); nil loads
	// the default credential chain.
	AWS *aws.Config
	// Endpoint overrides the EC2 endpoint (e.g. a VPC endpoint); empty
	// uses the regional one.
	Endpoint string
}

// Describer calls ec2:DescribeInstances in the document's region.
type Describer struct {
	cfg      aws.Config
	endpoint string
}

var _ awsiid.InstanceDescriber = (*Describer)(nil)

// New returns a describer; without c.AWS it loads the default AWS
// configuration (environment, shared files, instance or task role).
func New(ctx context.Context, c Config) (*Describer, error) {
	d := &Describer{endpoint: c.Endpoint}
	if c.AWS != nil {
		d.cfg = *c.AWS
		return d, nil
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("ec2describe: load AWS config: %w", err)
	}
	d.cfg = cfg
	return d, nil
}

// DescribeInstances looks instanceID up in region.
func (d *Describer) DescribeInstances(ctx context.Context, region, instanceID string) ([]awsiid.Instance, error) {
	client := ec2.NewFromConfig(d.cfg, func(o *ec2.Options) {
		o.Region = region
		if d.endpoint != "" {
			o.BaseEndpoint = aws.String(d.endpoint)
		}
	})
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		return nil, fmt.Errorf("ec2describe: %w", err)
	}
	var res []awsiid.Instance
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			i := awsiid.Instance{
				ID:       aws.ToString(in.InstanceId),
				VPCID:    aws.ToString(in.VpcId),
				SubnetID: aws.ToString(in.SubnetId),
			}
			if in.State != nil {
				i.State = string(in.State.Name)
			}
			if in.IamInstanceProfile != nil {
				i.IAMInstanceProfileARN = aws.ToString(in.IamInstanceProfile.Arn)
			}
			for _, t := range in.Tags {
				i.Tags = append(i.Tags, awsiid.Tag{Key: aws.ToString(t.Key), Value: aws.ToString(t.Value)})
			}
			for _, g := range in.SecurityGroups {
				i.SecurityGroupIDs = append(i.SecurityGroupIDs, aws.ToString(g.GroupId))
			}
			res = append(res, i)
		}
	}
	return res, nil
}
