// Package ec2describe is the EC2 client of the aws_iid verifier: an
// [awsiid.InstanceDescriber] built on the AWS SDK's ec2:DescribeInstances.
// It lives apart from package awsiid so that only the server, which wires
// it in, links the EC2 SDK client and its endpoint tables; the agent links
// awsiid for its collector alone.
//
// It must not import server/, agent/ or any attestor other than awsiid.
package ec2describe
