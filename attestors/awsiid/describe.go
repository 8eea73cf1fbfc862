package awsiid

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"

	"github.com/hallmarkid/hallmark/registration"
)

// describeTimeout bounds one DescribeInstances call, retries included.
const describeTimeout = 10 * time.Second

// describe looks the instance up with ec2:DescribeInstances in the
// document's region, requires it to be running and returns the extra
// selectors.
func (v *Verifier) describe(ctx context.Context, doc *Document) ([]registration.Selector, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	client := ec2.NewFromConfig(*v.awsCfg, func(o *ec2.Options) {
		o.Region = doc.Region
		if v.cfg.EC2Endpoint != "" {
			o.BaseEndpoint = aws.String(v.cfg.EC2Endpoint)
		}
	})
	out, err := client.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{doc.InstanceID}})
	if err != nil {
		return nil, fmt.Errorf("awsiid: describe instance %s: %w", doc.InstanceID, err)
	}
	var found int
	var sels []registration.Selector
	add := func(k, val string) {
		s := registration.Selector{Type: Type, Value: k + ":" + val}
		if val == "" {
			return
		}
		if err := s.Validate(); err != nil {
			v.log.Warn("aws_iid: skipping selector", "instance_id", doc.InstanceID, "err", err)
			return
		}
		sels = append(sels, s)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if aws.ToString(in.InstanceId) != doc.InstanceID {
				continue
			}
			found++
			if in.State == nil || in.State.Name != "running" {
				state := "unknown"
				if in.State != nil {
					state = string(in.State.Name)
				}
				return nil, fmt.Errorf("awsiid: instance %s is %s, not running", doc.InstanceID, state)
			}
			for _, t := range in.Tags {
				add("tag", aws.ToString(t.Key)+":"+aws.ToString(t.Value))
			}
			if in.IamInstanceProfile != nil {
				add("iam_instance_profile", aws.ToString(in.IamInstanceProfile.Arn))
			}
			add("vpc_id", aws.ToString(in.VpcId))
			add("subnet_id", aws.ToString(in.SubnetId))
			for _, g := range in.SecurityGroups {
				add("sg_id", aws.ToString(g.GroupId))
			}
		}
	}
	if found != 1 {
		return nil, fmt.Errorf("awsiid: describe instance %s: %d matches, want 1", doc.InstanceID, found)
	}
	return sels, nil
}
