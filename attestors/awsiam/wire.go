package awsiam

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Limits on what the agent sends.
const (
	MaxPayloadSize = 4 << 10
	MaxAnswerSize  = 16 << 10
	maxHeaders     = 16
)

// Hello is the agent's first payload.
type Hello struct {
	Version int `json:"version"`
	// ECS holds unverified ECS task metadata, if the agent sends it.
	ECS *ECSHint `json:"ecs,omitempty"`
}

// ECSHint is ECS task metadata as the task reports it: not verified.
type ECSHint struct {
	TaskARN string `json:"task_arn"`
	Cluster string `json:"cluster"`
	Family  string `json:"family"`
}

// SignedRequest is the agent's answer: the parts of a SigV4-signed
// sts:GetCallerIdentity request. Headers keep their order and duplicates
// so that the server can refuse ambiguous requests.
type SignedRequest struct {
	Method  string      `json:"method"`
	Host    string      `json:"host"`
	Path    string      `json:"path"`
	Headers [][2]string `json:"headers"`
	Body    string      `json:"body"`
}

// DecodeSignedRequest decodes an answer strictly: unknown fields, trailing
// data and more than a few headers are errors. It checks nothing else.
func DecodeSignedRequest(b []byte) (*SignedRequest, error) {
	var r SignedRequest
	if err := decodeStrict(b, MaxAnswerSize, &r); err != nil {
		return nil, fmt.Errorf("awsiam: signed request: %w", err)
	}
	if len(r.Headers) > maxHeaders {
		return nil, fmt.Errorf("awsiam: signed request: %d headers, more than %d", len(r.Headers), maxHeaders)
	}
	return &r, nil
}

func decodeStrict(b []byte, limit int, v any) error {
	if len(b) > limit {
		return fmt.Errorf("%d bytes, more than %d", len(b), limit)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data")
	}
	return nil
}
