// Package awsiid owns the "aws_iid" node attestor: EC2 instance identity
// documents, for EC2 and EKS nodes.
//
// The agent half ([Collector]) reads the document, its /rsa2048 PKCS#7
// signature and its /signature over IMDSv2. The server half ([Verifier])
// verifies the PKCS#7 SignedData against AWS's regional RSA-2048
// certificate chosen by the document's region (all embedded with go:embed),
// takes every identity field from the verified bytes only, applies the
// account allow-list and, optionally, checks with EC2 DescribeInstances that
// the instance is running (through an [InstanceDescriber]; the SDK client
// is in subpackage ec2describe, which only the server links). Instances
// attest once (trust on first use): results are not re-attestable and the
// server core refuses a second agent with the same ID.
//
// The embedded certificates are parsed on the verifier's first use, not at
// start-up. It must not import server/, agent/, any other attestor, or AWS
// SDK packages beyond the IMDS client.
package awsiid
