package awsiam

import "testing"

func FuzzParseCallerIdentity(f *testing.F) {
	f.Add(200, []byte(`<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult><Arn>arn:aws:sts::123456789012:assumed-role/r/s1</Arn><UserId>AROA:s1</UserId><Account>123456789012</Account></GetCallerIdentityResult></GetCallerIdentityResponse>`))
	f.Add(403, []byte(`<ErrorResponse><Error><Code>SignatureDoesNotMatch</Code></Error></ErrorResponse>`))
	f.Add(200, []byte(`<GetCallerIdentityResponse><GetCallerIdentityResult/><GetCallerIdentityResult/></GetCallerIdentityResponse>`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		arn, err := parseCallerIdentity(status, body)
		if err != nil {
			return
		}
		if status != 200 || !accountRE().MatchString(arn.account) || !nameRE().MatchString(arn.role) || !nameRE().MatchString(arn.session) {
			t.Fatalf("accepted %d %q as %+v", status, body, arn)
		}
	})
}
