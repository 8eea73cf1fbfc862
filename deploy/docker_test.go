package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

func TestDockerfiles(t *testing.T) {
	gomod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(gomod))
	if goVersion == nil {
		t.Fatal("no go directive in go.mod")
	}
	for _, name := range []string{"server", "agent"} {
		t.Run(name, func(t *testing.T) {
			bin := "hallmark-" + name
			data, err := os.ReadFile("docker/Dockerfile." + name)
			if err != nil {
				t.Fatal(err)
			}
			// Join continuation lines, drop comments.
			text := strings.ReplaceAll(string(data), "\\\n", " ")
			var froms, runs, copies []string
			var user, entrypoint string
			for _, line := range strings.Split(text, "\n") {
				line = strings.TrimSpace(line)
				instr, rest, _ := strings.Cut(line, " ")
				switch strings.ToUpper(instr) {
				case "FROM":
					froms = append(froms, rest)
				case "RUN":
					runs = append(runs, rest)
				case "COPY":
					copies = append(copies, rest)
				case "USER":
					user = rest
				case "ENTRYPOINT":
					entrypoint = rest
				}
			}
			if len(froms) != 2 {
				t.Fatalf("want a two-stage build, got FROM %v", froms)
			}
			if want := "golang:" + goVersion[1]; !strings.HasPrefix(froms[0], want) || !strings.HasSuffix(froms[0], " AS build") {
				t.Errorf("build stage %q, want %s… AS build (go.mod says go %s)", froms[0], want, goVersion[1])
			}
			if !strings.HasPrefix(froms[1], "gcr.io/distroless/static") && froms[1] != "scratch" {
				t.Errorf("final stage %q is not distroless/static or scratch", froms[1])
			}
			build := ""
			for _, r := range runs {
				if strings.Contains(r, "go build") {
					build = r
				}
			}
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-tags grpcnotrace", "./cmd/" + bin, "-o /out/" + bin} {
				if !strings.Contains(build, want) {
					t.Errorf("go build %q lacks %q", build, want)
				}
			}
			if _, err := os.Stat("../cmd/" + bin); err != nil {
				t.Errorf("package ./cmd/%s: %v", bin, err)
			}
			wantCopy := "--from=build /out/" + bin + " /" + bin
			if !strings.Contains(strings.Join(copies, "\n"), wantCopy) {
				t.Errorf("no COPY %s", wantCopy)
			}
			if user == "" || strings.HasPrefix(user, "0") || user == "root" {
				t.Errorf("USER %q: images run as non-root by default", user)
			}
			if entrypoint != `["/`+bin+`"]` {
				t.Errorf("ENTRYPOINT %s, want [\"/%s\"]", entrypoint, bin)
			}
		})
	}
}
