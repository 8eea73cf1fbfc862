package awsiid

import (
	"context"
	"fmt"
	"time"

	"github.com/hallmarkid/hallmark/registration"
)

// describeTimeout bounds one DescribeInstances call, retries included.
const describeTimeout = 10 * time.Second

// Instance is what ec2:DescribeInstances says about an instance: the
// fields the verifier checks or turns into selectors.
type Instance struct {
	ID                    string
	State                 string // "running", "stopped", ...; "" when EC2 gave none
	IAMInstanceProfileARN string
	VPCID                 string
	SubnetID              string
	SecurityGroupIDs      []string
	Tags                  []Tag
}

// Tag is an EC2 tag.
type Tag struct{ Key, Value string }

// InstanceDescriber calls ec2:DescribeInstances for one instance ID in
// region and returns every instance of the answer. Package
// awsiid/ec2describe implements it with the AWS SDK; the verifier takes
// the interface so that the agent, which links this package for its
// collector, does not link the EC2 client.
type InstanceDescriber interface {
	DescribeInstances(ctx context.Context, region, instanceID string) ([]Instance, error)
}

// WithInstanceDescriber sets the EC2 client that describe_instances uses;
// NewVerifier requires one when describe_instances is on.
func WithInstanceDescriber(d InstanceDescriber) Option {
	return optionFunc(func(v *Verifier) { v.ec2 = d })
}

// describe looks the instance up with ec2:DescribeInstances in the
// document's region, requires it to be running and returns the extra
// selectors.
func (v *Verifier) describe(ctx context.Context, doc *Document) ([]registration.Selector, error) {
	ctx, cancel := context.WithTimeout(ctx, describeTimeout)
	defer cancel()
	instances, err := v.ec2.DescribeInstances(ctx, doc.Region, doc.InstanceID)
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
	for _, in := range instances {
		if in.ID != doc.InstanceID {
			continue
		}
		found++
		if in.State != "running" {
			state := in.State
			if state == "" {
				state = "unknown"
			}
			return nil, fmt.Errorf("awsiid: instance %s is %s, not running", doc.InstanceID, state)
		}
		for _, t := range in.Tags {
			add("tag", t.Key+":"+t.Value)
		}
		add("iam_instance_profile", in.IAMInstanceProfileARN)
		add("vpc_id", in.VPCID)
		add("subnet_id", in.SubnetID)
		for _, g := range in.SecurityGroupIDs {
			add("sg_id", g)
		}
	}
	if found != 1 {
		return nil, fmt.Errorf("awsiid: describe instance %s: %d matches, want 1", doc.InstanceID, found)
	}
	return sels, nil
}
