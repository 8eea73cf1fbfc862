package deploy_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// labelRE matches one key=value of a LABEL instruction.
var labelRE = regexp.MustCompile(`([A-Za-z0-9._-]+)=("[^"]*"|\S+)`)

// TestDockerignore: the build context (the repository root) leaves out
// what must never reach an image layer or a remote builder: ./data holds
// the CA keys of the README's walkthrough.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			have[strings.Trim(line, "/")] = true
		}
	}
	for _, want := range []string{"data", "bin", ".git", "conf/bundle.pem", ".demo"} {
		if !have[want] {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
}

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
			// args and labels per stage (index into froms).
			var args []map[string]bool
			var labels []map[string]string
			for _, line := range strings.Split(text, "\n") {
				line = strings.TrimSpace(line)
				instr, rest, _ := strings.Cut(line, " ")
				switch strings.ToUpper(instr) {
				case "FROM":
					froms = append(froms, rest)
					args = append(args, map[string]bool{})
					labels = append(labels, map[string]string{})
				case "ARG":
					name, _, _ := strings.Cut(rest, "=")
					args[len(args)-1][name] = true
				case "LABEL":
					for _, m := range labelRE.FindAllStringSubmatch(rest, -1) {
						labels[len(labels)-1][m[1]] = strings.Trim(m[2], `"`)
					}
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
			// The build stage runs on the build machine and cross-compiles
			// for each target platform (docker buildx --platform ...).
			if !strings.HasPrefix(froms[0], "--platform=$BUILDPLATFORM ") {
				t.Errorf("build stage %q: want FROM --platform=$BUILDPLATFORM", froms[0])
			}
			froms[0] = strings.TrimPrefix(froms[0], "--platform=$BUILDPLATFORM ")
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
			for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-tags grpcnotrace", "./cmd/" + bin, "-o /out/" + bin,
				"GOOS=${TARGETOS:-linux}", "GOARCH=${TARGETARCH}", "-X main.version=${VERSION}"} {
				if !strings.Contains(build, want) {
					t.Errorf("go build %q lacks %q", build, want)
				}
			}
			for _, a := range []string{"TARGETOS", "TARGETARCH", "VERSION"} {
				if !args[0][a] {
					t.Errorf("build stage lacks ARG %s", a)
				}
			}
			// -X main.version sets the variable -version prints.
			src, err := os.ReadFile("../cmd/" + bin + "/version.go")
			if err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`(?m)^var version string$`).Match(src) || !strings.Contains(string(src), "package main") {
				t.Errorf("cmd/%s/version.go has no package-level `var version string` for -X main.version", bin)
			}
			// OCI image labels on the final image.
			wantLabels := map[string]string{
				"org.opencontainers.image.title":    bin,
				"org.opencontainers.image.source":   "https://github.com/hallmarkid/hallmark",
				"org.opencontainers.image.version":  "${VERSION}",
				"org.opencontainers.image.revision": "${REVISION}",
			}
			for k, v := range wantLabels {
				if got, ok := labels[1][k]; !ok || got != v {
					t.Errorf("final stage label %s=%q, want %q", k, got, v)
				}
			}
			if labels[1]["org.opencontainers.image.description"] == "" {
				t.Error("final stage has no org.opencontainers.image.description label")
			}
			for _, a := range []string{"VERSION", "REVISION"} {
				if !args[1][a] {
					t.Errorf("final stage lacks ARG %s (its labels use it)", a)
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
