package k8spsat

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// Type is the attestation type on the wire.
const Type = "k8s_psat"

// Limits on untrusted input.
const (
	MaxTokenSize   = 16 << 10
	MaxPayloadSize = MaxTokenSize + 1024
)

// Payload is what the agent sends: the cluster it claims to be in (which
// selects the server's validation settings) and its projected token.
type Payload struct {
	Cluster string `json:"cluster"`
	Token   string `json:"token"`
}

// ParsePayload decodes and bounds an agent's payload.
func ParsePayload(b []byte) (Payload, error) {
	if len(b) > MaxPayloadSize {
		return Payload{}, fmt.Errorf("k8spsat: payload larger than %d bytes", MaxPayloadSize)
	}
	var p Payload
	if err := json.Unmarshal(b, &p); err != nil {
		return Payload{}, fmt.Errorf("k8spsat: parse payload: %w", err)
	}
	switch {
	case p.Cluster == "":
		return Payload{}, errors.New("k8spsat: payload names no cluster")
	case p.Token == "":
		return Payload{}, errors.New("k8spsat: payload carries no token")
	case len(p.Token) > MaxTokenSize:
		return Payload{}, fmt.Errorf("k8spsat: token larger than %d bytes", MaxTokenSize)
	}
	return p, nil
}

func base64URLDecode(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
