package awsiam

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/credentials/endpointcreds"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// ecsCredentialsHost serves AWS_CONTAINER_CREDENTIALS_RELATIVE_URI.
const ecsCredentialsHost = "http://169.254.170.2"

// defaultCredentials picks the agent's credential source from the
// environment, in the AWS SDK's order for the sources an agent runs with:
//
//  1. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (with AWS_SESSION_TOKEN);
//  2. AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN (EKS IAM roles for
//     service accounts), exchanged with sts:AssumeRoleWithWebIdentity;
//  3. AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (ECS and Fargate task roles)
//     or AWS_CONTAINER_CREDENTIALS_FULL_URI (EKS Pod Identity), with
//     AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE or _TOKEN;
//  4. the EC2 instance role from IMDS.
//
// Shared config and credentials files (profiles, SSO, credential_process)
// are not read: the SDK's loader for them would add megabytes to every
// agent, and an agent has no use for a person's profile.
func defaultCredentials(region string) (aws.CredentialsProvider, error) {
	var p aws.CredentialsProvider
	switch {
	case os.Getenv("AWS_ACCESS_KEY_ID") != "" && os.Getenv("AWS_SECRET_ACCESS_KEY") != "":
		p = credentials.NewStaticCredentialsProvider(os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN"))
	case os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		role := os.Getenv("AWS_ROLE_ARN")
		if role == "" {
			return nil, errors.New("awsiam: credentials: AWS_WEB_IDENTITY_TOKEN_FILE is set but AWS_ROLE_ARN is not")
		}
		client := sts.New(sts.Options{Region: region})
		p = stscreds.NewWebIdentityRoleProvider(client, role, stscreds.IdentityTokenFile(os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE")),
			func(o *stscreds.WebIdentityRoleOptions) { o.RoleSessionName = os.Getenv("AWS_ROLE_SESSION_NAME") })
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		p = containerCredentials(ecsCredentialsHost + os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"))
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		u := os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI")
		if err := checkContainerCredentialsURI(u); err != nil {
			return nil, err
		}
		p = containerCredentials(u)
	default:
		p = ec2rolecreds.New()
	}
	return aws.NewCredentialsCache(p, func(o *aws.CredentialsCacheOptions) { o.ExpiryWindow = 5 * time.Minute }), nil
}

func containerCredentials(endpoint string) aws.CredentialsProvider {
	return endpointcreds.New(endpoint, func(o *endpointcreds.Options) {
		o.AuthorizationToken = os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN")
		if path := os.Getenv("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"); path != "" {
			o.AuthorizationTokenProvider = endpointcreds.TokenProviderFunc(func() (string, error) {
				b, err := os.ReadFile(path)
				if err != nil {
					return "", fmt.Errorf("awsiam: container authorization token: %w", err)
				}
				return strings.TrimSpace(string(b)), nil
			})
		}
	})
}

// containerHosts are the link-local addresses of the ECS and EKS Pod
// Identity credential agents.
var containerHosts = []string{"169.254.170.2", "169.254.170.23", "fd00:ec2::23"}

// checkContainerCredentialsURI allows HTTPS anywhere, and plain HTTP only
// to a loopback address or a container credential agent's address, as the
// AWS SDKs do: credentials must not cross a network in the clear.
func checkContainerCredentialsURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("awsiam: AWS_CONTAINER_CREDENTIALS_FULL_URI: %w", err)
	}
	switch u.Scheme {
	case "https":
		if u.Host == "" {
			return errors.New("awsiam: AWS_CONTAINER_CREDENTIALS_FULL_URI has no host")
		}
		return nil
	case "http":
		host := u.Hostname()
		if host == "localhost" {
			return nil
		}
		if ip := net.ParseIP(host); ip != nil {
			if ip.IsLoopback() {
				return nil
			}
			for _, h := range containerHosts {
				if ip.Equal(net.ParseIP(h)) {
					return nil
				}
			}
		}
		return fmt.Errorf("awsiam: AWS_CONTAINER_CREDENTIALS_FULL_URI: plain HTTP only to loopback or %s, not %q", strings.Join(containerHosts, ", "), host)
	default:
		return fmt.Errorf("awsiam: AWS_CONTAINER_CREDENTIALS_FULL_URI: scheme %q is neither http nor https", u.Scheme)
	}
}
