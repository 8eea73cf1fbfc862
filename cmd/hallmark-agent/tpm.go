package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	tpmattest "github.com/hallmarkid/hallmark/attestors/tpm"
	"github.com/hallmarkid/hallmark/tpm"
)

// tpmCmd implements `hallmark-agent tpm ek-hash|info`.
func tpmCmd(args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "ek-hash" && args[0] != "info") {
		return errors.New("usage: hallmark-agent tpm ek-hash|info [-device /dev/tpmrm0|unix:PATH|tcp:HOST:PORT] [-ekType rsa|ecc]")
	}
	fs := flag.NewFlagSet("tpm "+args[0], flag.ContinueOnError)
	device := fs.String("device", tpm.DefaultDevice, "TPM device: a character device, unix:PATH or tcp:HOST:PORT (swtpm)")
	ekType := fs.String("ekType", string(tpm.RSA), "EK type: rsa or ecc")
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	d, err := tpm.Open(*device, tpm.WithEK(tpm.KeyAlg(*ekType)))
	if err != nil {
		return err
	}
	defer d.Close()
	if args[0] == "ek-hash" {
		h, err := d.EKHash()
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, h)
		return nil
	}
	info, err := d.Info()
	if err != nil {
		return err
	}
	// The selector comes from the EK certificate (what the manufacturer's
	// CA certified), not from the TPM's own claim: the two can differ
	// (swtpm reports "IBM" 49424D00, its EK certificates id:00001014).
	certMfr := "(no EK certificate)"
	if ek, err := d.EK(); err != nil {
		return err
	} else if ek.Cert != nil {
		switch m, err := tpmattest.EKCertManufacturer(ek.Cert); {
		case err != nil:
			certMfr = "unparseable EK certificate: " + err.Error()
		case m == "":
			certMfr = "(not named by the EK certificate)"
		default:
			certMfr = "tpm:manufacturer:" + m
		}
	}
	fmt.Fprintf(stdout, "Manufacturer:      %s (%s, as the TPM reports it)\n", info.Manufacturer, info.ManufacturerID)
	fmt.Fprintf(stdout, "Selector:          %s (from the EK certificate)\n", certMfr)
	fmt.Fprintf(stdout, "Vendor string:     %s\n", info.VendorString)
	fmt.Fprintf(stdout, "Firmware version:  %s\n", info.FirmwareVersion)
	fmt.Fprintf(stdout, "EK hash:           %s\n", info.EKHash)
	fmt.Fprintf(stdout, "EK cert subject:   %s\n", orNone(info.EKCertSubject))
	fmt.Fprintf(stdout, "EK cert issuer:    %s\n", orNone(info.EKCertIssuer))
	fmt.Fprintf(stdout, "PCR banks:         %s\n", strings.Join(info.PCRBanks, ", "))
	return nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
