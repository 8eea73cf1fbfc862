// Package awsiam owns the "aws_iam" node attestor: proof of holding IAM
// role credentials (Fargate task roles, or any workload with an assumed
// role) by a signed sts:GetCallerIdentity request.
//
// The agent half ([Collector]) signs GetCallerIdentity with SigV4,
// including the server's challenge and the name of the server it attests
// to (spiffe://<td>/hallmark/server, or server_id) in the signed
// X-Hallmark-Challenge header, and sends the request's parts; a request
// signed for another deployment is refused. The server half ([Verifier])
// checks them against strict rules — allow-listed STS host, POST /, the
// exact body, allow-listed headers only, no duplicates, the challenge
// signed and naming this server and the challenge issued, X-Amz-Date within the skew — before
// it rebuilds the request itself and forwards it to STS (redirects are not
// followed). STS's answer gives the caller's ARN, which must be an
// assumed role in an allow-listed account (and role, if configured).
//
// The collector finds its credentials in the environment (static keys, web
// identity, container credentials, else the EC2 instance role; see
// credentials.go), not with the SDK's config loader, which would link
// SSO, sign-in and shared-file support into every agent.
//
// Subpackage awsfake holds the loopback AWS fakes used by the AWS
// attestors' tests.
//
// It must not import server/, agent/ or any other attestor.
package awsiam
