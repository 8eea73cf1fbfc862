package bundlepub

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/hallmarkid/hallmark/internal/hclconf"
	"github.com/hallmarkid/hallmark/internal/kubeapi"
)

// Kinds of bundle_publisher blocks.
const (
	KindFile      = "file"
	KindConfigMap = "k8s_configmap"
	KindSSM       = "aws_ssm"
)

// Defaults of the k8s_configmap block (the names deploy/kubernetes uses).
const (
	DefaultNamespace    = "hallmark"
	DefaultConfigMap    = "hallmark-bundle"
	DefaultConfigMapKey = "bundle.pem"
)

// FileHCL is the body of bundle_publisher "file".
type FileHCL struct {
	// Path is the file written (required); its directory must exist.
	Path   string `hcl:"path"`
	Format string `hcl:"format,optional"`
}

// ConfigMapHCL is the body of bundle_publisher "k8s_configmap"; the keys
// are those of SPIRE's k8sbundle notifier.
type ConfigMapHCL struct {
	Namespace    string `hcl:"namespace,optional"`
	ConfigMap    string `hcl:"config_map,optional"`
	ConfigMapKey string `hcl:"config_map_key,optional"`
	// KubeConfigFilePath names a kubeconfig; empty means in-cluster (the
	// server pod's service account).
	KubeConfigFilePath string `hcl:"kube_config_file_path,optional"`
	Format             string `hcl:"format,optional"`
}

// SSMHCL is the body of bundle_publisher "aws_ssm".
type SSMHCL struct {
	// ParameterName is the parameter's name ("/hallmark/trust-bundle"),
	// required.
	ParameterName string `hcl:"parameter_name"`
	// Region defaults to the AWS configuration's (AWS_REGION, shared
	// config, the task's or instance's region).
	Region string `hcl:"region,optional"`
	// ParameterType is "String" (default) or "SecureString".
	ParameterType string `hcl:"parameter_type,optional"`
	// Tier is "Standard" (default; values up to 4 KB), "Advanced" or
	// "Intelligent-Tiering".
	Tier string `hcl:"tier,optional"`
	// Endpoint overrides the SSM endpoint (a VPC endpoint): https, or
	// http to a loopback address only.
	Endpoint string `hcl:"endpoint,optional"`
	Format   string `hcl:"format,optional"`
}

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	cmName   = regexp.MustCompile(`^[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?$`)
	cmKey    = regexp.MustCompile(`^[-._a-zA-Z0-9]{1,253}$`)
	ssmName  = regexp.MustCompile(`^/?[a-zA-Z0-9_.\-/]+$`)
)

// Outputs decodes the bundle_publisher blocks strictly and builds their
// targets. Nothing is contacted; AWS configuration is loaded (from the
// environment and files) for aws_ssm.
func Outputs(ctx context.Context, blocks []hclconf.Block) ([]Output, error) {
	var out []Output
	for _, b := range blocks {
		o, err := output(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("bundlepub: %s: bundle_publisher %q: %w", b.Pos(), b.Kind, err)
		}
		out = append(out, o)
	}
	return out, nil
}

func output(ctx context.Context, b hclconf.Block) (Output, error) {
	switch b.Kind {
	case KindFile:
		var h FileHCL
		if err := hclconf.DecodeBlock(b, &h); err != nil {
			return Output{}, err
		}
		f, err := ParseFormat(h.Format)
		if err != nil {
			return Output{}, err
		}
		if h.Path == "" {
			return Output{}, fmt.Errorf("path must not be empty")
		}
		p, err := filepath.Abs(h.Path)
		if err != nil {
			return Output{}, err
		}
		return Output{Target: &File{Path: p}, Format: f}, nil
	case KindConfigMap:
		h := ConfigMapHCL{Namespace: DefaultNamespace, ConfigMap: DefaultConfigMap, ConfigMapKey: DefaultConfigMapKey}
		if err := hclconf.DecodeBlock(b, &h); err != nil {
			return Output{}, err
		}
		f, err := ParseFormat(h.Format)
		if err != nil {
			return Output{}, err
		}
		switch {
		case !dnsLabel.MatchString(h.Namespace):
			return Output{}, fmt.Errorf("namespace %q is not a Kubernetes namespace name", h.Namespace)
		case !cmName.MatchString(h.ConfigMap):
			return Output{}, fmt.Errorf("config_map %q is not a Kubernetes object name", h.ConfigMap)
		case !cmKey.MatchString(h.ConfigMapKey):
			return Output{}, fmt.Errorf("config_map_key %q is not a valid ConfigMap key", h.ConfigMapKey)
		}
		api, err := kubeapi.New(kubeapi.Config{KubeConfigFile: h.KubeConfigFilePath, InCluster: h.KubeConfigFilePath == ""})
		if err != nil {
			return Output{}, err
		}
		return Output{Target: &ConfigMap{API: api, Namespace: h.Namespace, Name: h.ConfigMap, Key: h.ConfigMapKey}, Format: f}, nil
	case KindSSM:
		h := SSMHCL{ParameterType: string(ssmtypes.ParameterTypeString), Tier: string(ssmtypes.ParameterTierStandard)}
		if err := hclconf.DecodeBlock(b, &h); err != nil {
			return Output{}, err
		}
		return ssmOutput(ctx, h)
	}
	return Output{}, fmt.Errorf("unknown kind (want %q, %q or %q)", KindFile, KindConfigMap, KindSSM)
}

func ssmOutput(ctx context.Context, h SSMHCL) (Output, error) {
	f, err := ParseFormat(h.Format)
	if err != nil {
		return Output{}, err
	}
	if len(h.ParameterName) > 1011 || !ssmName.MatchString(h.ParameterName) {
		return Output{}, fmt.Errorf("parameter_name %q is not an SSM parameter name", h.ParameterName)
	}
	typ := ssmtypes.ParameterType(h.ParameterType)
	if typ != ssmtypes.ParameterTypeString && typ != ssmtypes.ParameterTypeSecureString {
		return Output{}, fmt.Errorf("parameter_type %q is not \"String\" or \"SecureString\"", h.ParameterType)
	}
	tier := ssmtypes.ParameterTier(h.Tier)
	switch tier {
	case ssmtypes.ParameterTierStandard, ssmtypes.ParameterTierAdvanced, ssmtypes.ParameterTierIntelligentTiering:
	default:
		return Output{}, fmt.Errorf("tier %q is not \"Standard\", \"Advanced\" or \"Intelligent-Tiering\"", h.Tier)
	}
	if h.Endpoint != "" {
		if err := checkEndpoint(h.Endpoint); err != nil {
			return Output{}, err
		}
	}
	var opts []func(*awsconfig.LoadOptions) error
	if h.Region != "" {
		opts = append(opts, awsconfig.WithRegion(h.Region))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return Output{}, fmt.Errorf("load AWS config: %w", err)
	}
	if cfg.Region == "" {
		return Output{}, fmt.Errorf("no AWS region: set region or AWS_REGION")
	}
	client := ssm.NewFromConfig(cfg, func(o *ssm.Options) {
		if h.Endpoint != "" {
			o.BaseEndpoint = aws.String(h.Endpoint)
		}
	})
	return Output{Target: &SSMParameter{Client: client, Name: h.ParameterName, Type: typ, Tier: tier}, Format: f}, nil
}

// checkEndpoint accepts https URLs, and http ones to a loopback address.
func checkEndpoint(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("endpoint %q is not a URL", s)
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
			return nil
		}
	}
	return fmt.Errorf("endpoint %q must be https (http only to a loopback address)", s)
}
