package awsfake

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Instance is an EC2 instance known to the EC2 fake.
type Instance struct {
	ID                 string
	Account            string
	State              string // "running", "stopped", ...
	ImageID            string
	InstanceType       string
	VPCID              string
	SubnetID           string
	InstanceProfileARN string
	SecurityGroups     []string
	Tags               map[string]string
}

// EC2 is an EC2 fake serving only correctly signed DescribeInstances calls
// for one instance ID at a time.
type EC2 struct {
	URL      string
	Requests atomic.Int64

	mu        sync.Mutex
	creds     map[string]Credentials
	instances map[string]Instance
}

// NewEC2 starts an EC2 fake; it stops with the test.
func NewEC2(t testing.TB, creds Credentials, instances ...Instance) *EC2 {
	e := &EC2{creds: map[string]Credentials{creds.AccessKeyID: creds}, instances: map[string]Instance{}}
	for _, in := range instances {
		e.instances[in.ID] = in
	}
	srv := httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(srv.Close)
	e.URL = srv.URL
	return e
}

func ec2Error(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "text/xml")
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>`,
		xmlEscape(code), xmlEscape(msg), requestID())
}

func (e *EC2) serve(w http.ResponseWriter, r *http.Request) {
	e.Requests.Add(1)
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody))
	if err != nil || r.Method != http.MethodPost {
		ec2Error(w, http.StatusBadRequest, "InvalidRequest", "want POST")
		return
	}
	e.mu.Lock()
	creds := e.creds
	e.mu.Unlock()
	if _, err := VerifySigV4(r, body, "ec2", creds, time.Now()); err != nil {
		code, msg, _ := strings.Cut(err.Error(), ": ")
		ec2Error(w, http.StatusForbidden, code, msg)
		return
	}
	form, err := url.ParseQuery(string(body))
	if err != nil || form.Get("Action") != "DescribeInstances" {
		ec2Error(w, http.StatusBadRequest, "InvalidAction", "only DescribeInstances is served")
		return
	}
	ids := form["InstanceId.1"]
	if len(ids) != 1 || form.Get("InstanceId.2") != "" {
		ec2Error(w, http.StatusBadRequest, "InvalidParameterCombination", "want exactly one InstanceId")
		return
	}
	e.mu.Lock()
	in, ok := e.instances[ids[0]]
	e.mu.Unlock()
	if !ok {
		ec2Error(w, http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", ids[0]))
		return
	}
	w.Header().Set("Content-Type", "text/xml")
	io.WriteString(w, describeXML(in))
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

func describeXML(in Instance) string {
	var b strings.Builder
	x := xmlEscape
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
  <requestId>%s</requestId>
  <reservationSet><item>
    <reservationId>r-0123456789abcdef0</reservationId>
    <ownerId>%s</ownerId>
    <groupSet/>
    <instancesSet><item>
      <instanceId>%s</instanceId>
      <imageId>%s</imageId>
      <instanceState><code>%d</code><name>%s</name></instanceState>
      <instanceType>%s</instanceType>
      <subnetId>%s</subnetId>
      <vpcId>%s</vpcId>
`, requestID(), x(in.Account), x(in.ID), x(in.ImageID), stateCodes[in.State], x(in.State), x(in.InstanceType), x(in.SubnetID), x(in.VPCID))
	if in.InstanceProfileARN != "" {
		fmt.Fprintf(&b, "      <iamInstanceProfile><arn>%s</arn><id>AIPAEXAMPLE</id></iamInstanceProfile>\n", x(in.InstanceProfileARN))
	}
	b.WriteString("      <groupSet>\n")
	for _, g := range in.SecurityGroups {
		fmt.Fprintf(&b, "        <item><groupId>%s</groupId><groupName>%s</groupName></item>\n", x(g), x(g))
	}
	b.WriteString("      </groupSet>\n      <tagSet>\n")
	keys := make([]string, 0, len(in.Tags))
	for k := range in.Tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "        <item><key>%s</key><value>%s</value></item>\n", x(k), x(in.Tags[k]))
	}
	b.WriteString("      </tagSet>\n    </item></instancesSet>\n  </item></reservationSet>\n</DescribeInstancesResponse>\n")
	return b.String()
}
