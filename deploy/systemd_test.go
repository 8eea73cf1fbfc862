package deploy_test

import (
	"bufio"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	agentconfig "github.com/hallmarkid/hallmark/agent/config"
	serverconfig "github.com/hallmarkid/hallmark/server/config"
)

// unit is a parsed systemd unit file: section → key → values in order.
type unit map[string]map[string][]string

func parseUnit(data string) (unit, error) {
	u := make(unit)
	section := ""
	sc := bufio.NewScanner(strings.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if _, dup := u[section]; dup {
				return nil, fmt.Errorf("line %d: section [%s] twice", n, section)
			}
			u[section] = make(map[string][]string)
		case strings.HasSuffix(line, "\\"):
			return nil, fmt.Errorf("line %d: continuation lines are not used here", n)
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				return nil, fmt.Errorf("line %d: %q is not key=value in a section", n, line)
			}
			k = strings.TrimSpace(k)
			u[section][k] = append(u[section][k], strings.TrimSpace(v))
		}
	}
	return u, sc.Err()
}

// one returns the single value of key.
func (u unit) one(section, key string) string {
	v := u[section][key]
	if len(v) != 1 {
		return fmt.Sprintf("<%d values>", len(v))
	}
	return v[0]
}

// knownKeys are the directives these units may use; a typo would make
// systemd warn and ignore the setting (a hardening option silently off).
var knownKeys = map[string][]string{
	"Unit":    {"Description", "Documentation", "After", "Wants", "Requires"},
	"Install": {"WantedBy"},
	"Service": {
		"Type", "User", "Group", "ExecStart", "Restart", "RestartSec", "TimeoutStopSec", "LimitNOFILE", "UMask",
		"StateDirectory", "StateDirectoryMode", "LogsDirectory", "LogsDirectoryMode", "RuntimeDirectory",
		"RuntimeDirectoryMode", "ReadWritePaths", "ReadOnlyPaths", "DevicePolicy", "DeviceAllow",
		"SupplementaryGroups", "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities",
		"ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
		"ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname",
		"ProtectProc", "ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime",
		"RestrictSUIDSGID", "LockPersonality", "MemoryDenyWriteExecute", "RemoveIPC", "SystemCallArchitectures",
		"SystemCallFilter", "SystemCallErrorNumber",
	},
}

// hardening every unit must carry.
var hardening = map[string]string{
	"NoNewPrivileges":         "yes",
	"ProtectSystem":           "strict",
	"ProtectHome":             "yes",
	"PrivateTmp":              "yes",
	"CapabilityBoundingSet":   "",
	"AmbientCapabilities":     "",
	"ProtectKernelTunables":   "yes",
	"ProtectKernelModules":    "yes",
	"ProtectControlGroups":    "yes",
	"RestrictSUIDSGID":        "yes",
	"RestrictNamespaces":      "yes",
	"MemoryDenyWriteExecute":  "yes",
	"LockPersonality":         "yes",
	"SystemCallArchitectures": "native",
	"SystemCallErrorNumber":   "EPERM",
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, "/")+"/")
}

func TestSystemdUnits(t *testing.T) {
	tests := []struct {
		name   string
		unit   string
		config string
		// want holds service settings specific to the unit.
		want map[string]string
		// absent must not be set.
		absent []string
	}{
		{
			name: "server", unit: "systemd/hallmark-server.service", config: "systemd/server.hcl",
			want: map[string]string{
				"Type": "notify", "User": "hallmark", "PrivateDevices": "yes", "ProtectProc": "invisible",
				"StateDirectory": "hallmark/server", "RuntimeDirectory": "hallmark-server", "RuntimeDirectoryMode": "0700",
				"LogsDirectory": "hallmark",
			},
			absent: []string{"DeviceAllow", "SupplementaryGroups"},
		},
		{
			name: "agent", unit: "systemd/hallmark-agent.service", config: "systemd/agent.hcl",
			want: map[string]string{
				// tss: udev's group of /dev/tpmrm0 (0660) on Debian/Ubuntu; the
				// unit drops every capability, so root needs the group.
				"Type": "notify", "User": "root", "SupplementaryGroups": "tss", "DevicePolicy": "closed", "DeviceAllow": "/dev/tpmrm0 rw",
				"StateDirectory": "hallmark/agent", "RuntimeDirectory": "hallmark-agent", "RuntimeDirectoryMode": "0755",
			},
			// The agent reads callers' /proc entries and opens the TPM.
			absent: []string{"ProtectProc", "PrivateDevices", "PrivateUsers"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(tt.unit)
			if err != nil {
				t.Fatal(err)
			}
			u, err := parseUnit(string(data))
			if err != nil {
				t.Fatalf("%s: %v", tt.unit, err)
			}
			for section, keys := range u {
				allowed, ok := knownKeys[section]
				if !ok {
					t.Errorf("%s: unexpected section [%s]", tt.unit, section)
				}
				for k := range keys {
					if !slices.Contains(allowed, k) {
						t.Errorf("%s: [%s] %s is not a directive these units use (typo?)", tt.unit, section, k)
					}
				}
			}
			for k, v := range hardening {
				if got := u.one("Service", k); got != v {
					t.Errorf("%s: %s=%q, want %q", tt.unit, k, got, v)
				}
			}
			for k, v := range tt.want {
				if got := u.one("Service", k); got != v {
					t.Errorf("%s: %s=%q, want %q", tt.unit, k, got, v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := u["Service"][k]; ok {
					t.Errorf("%s: %s must not be set", tt.unit, k)
				}
			}
			if u.one("Install", "WantedBy") != "multi-user.target" {
				t.Errorf("%s: not wanted by multi-user.target", tt.unit)
			}

			// ExecStart runs the binary with the example configuration,
			// whose paths are writable under ProtectSystem=strict.
			bin := "hallmark-" + tt.name
			wantExec := fmt.Sprintf("/usr/local/bin/%s run -config /etc/hallmark/%s", bin, path.Base(tt.config))
			if got := u.one("Service", "ExecStart"); got != wantExec {
				t.Errorf("%s: ExecStart=%q, want %q", tt.unit, got, wantExec)
			}
			rw := strings.Fields(u.one("Service", "ReadWritePaths"))
			writable := func(p string) bool {
				for _, d := range rw {
					if within(p, d) {
						return true
					}
				}
				return false
			}
			for _, d := range []struct{ key, base string }{
				{"StateDirectory", "/var/lib/"}, {"RuntimeDirectory", "/run/"}, {"LogsDirectory", "/var/log/"},
			} {
				if v, ok := u["Service"][d.key]; ok && !writable(d.base+v[0]) {
					t.Errorf("%s: %s %s is not in ReadWritePaths %v", tt.unit, d.key, d.base+v[0], rw)
				}
			}
			src, err := os.ReadFile(tt.config)
			if err != nil {
				t.Fatal(err)
			}
			var (
				paths   map[string]string
				rootDef string // the daemon's socket_path default as root, which its CLI looks for
			)
			if tt.name == "server" {
				rootDef = serverconfig.RootSocketPath
				f := parseServerHCL(t, tt.config, src)
				paths = map[string]string{"data_dir": f.DataDir, "socket_path": f.SocketPath, "datastore path": f.Datastore.Path}
				if f.AuditCfg == nil || f.AuditCfg.Path == "" || f.AuditCfg.Fsync != "always" {
					t.Errorf("%s: want an audit file with fsync = \"always\"", tt.config)
				} else {
					paths["audit path"] = f.AuditCfg.Path
				}
				if f.TelemetryCfg == nil || !strings.HasPrefix(f.TelemetryCfg.ListenAddress, "127.0.0.1:") {
					t.Errorf("%s: telemetry should listen on loopback", tt.config)
				}
			} else {
				rootDef = agentconfig.RootSocketPath
				f := parseAgentHCL(t, tt.config, src)
				paths = map[string]string{"data_dir": f.DataDir, "socket_path": f.SocketPath}
				if f.NodeAttestor.Kind != "tpm" {
					t.Errorf("%s: node attestor %q, want tpm", tt.config, f.NodeAttestor.Kind)
				}
			}
			for what, p := range paths {
				if !writable(p) {
					t.Errorf("%s: %s %s is not writable under %s (ReadWritePaths %v)", tt.config, what, p, tt.unit, rw)
				}
			}
			// The socket lies directly in RuntimeDirectory, which systemd
			// creates owned by the service's user with RuntimeDirectoryMode:
			// what the daemon requires of its socket's directory. It is the
			// root default, so the CLIs find it without -socketPath.
			if got, want := path.Dir(paths["socket_path"]), "/run/"+u.one("Service", "RuntimeDirectory"); got != want {
				t.Errorf("%s: socket_path in %s, want directly in RuntimeDirectory %s", tt.config, got, want)
			}
			if paths["socket_path"] != rootDef {
				t.Errorf("%s: socket_path %s, want %s (the default as root, where the CLI looks first)", tt.config, paths["socket_path"], rootDef)
			}
		})
	}
}

func TestParseUnitRejects(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		wantErr string
	}{
		{name: "outside a section", src: "User=x\n", wantErr: "not key=value in a section"},
		{name: "no equals", src: "[Service]\nUser\n", wantErr: "not key=value"},
		{name: "duplicate section", src: "[Service]\n[Service]\n", wantErr: "twice"},
		{name: "continuation", src: "[Service]\nExecStart=a \\\n", wantErr: "continuation"},
		{name: "fine", src: "# c\n[Service]\nUser=x\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseUnit(tt.src)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !contains(err.Error(), tt.wantErr)) {
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}
