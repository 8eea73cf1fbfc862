package k8s_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hallmarkid/hallmark/attestors/k8s"
)

const (
	cidBlog  = "9bca8d63d5fa610783847915bcff0ecac1273e5b4bed3f6fa1b07350e0135961"
	cidInit  = "34a2062fd26c805aa8cf814cdfe479322b791f80afb9ea4db02d50375df14b41"
	cidCRIO  = "09bc3d7ade839efec32b6bec4ec79d099027a668ddba043083ec21d3c3b8f1e6"
	uidBlog  = "2c48913c-b29f-11e7-9350-020968147796"
	uidInit  = "d488cae9-b2a0-11e7-9350-020968147796"
	uidCRIO  = "a2830d0d-b0f0-4ff0-81b5-0ee4e299cf80"
	hex64    = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	otherHex = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	uid      = "11111111-2222-3333-4444-555555555555"
	uidU     = "11111111_2222_3333_4444_555555555555"
)

func TestParseCgroupFileFixtures(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		wantFound bool
		wantID    string
		wantPod   string
	}{
		{name: "v1 cgroupfs docker", file: "cgroups_pid_in_pod.txt", wantFound: true, wantID: cidBlog, wantPod: uidBlog},
		{name: "v1 init container", file: "cgroups_init_pid_in_pod.txt", wantFound: true, wantID: cidInit, wantPod: uidInit},
		{name: "v1 systemd docker", file: "systemd_cgroups_pid_in_pod.txt", wantFound: true, wantID: cidBlog, wantPod: uidBlog},
		{name: "v1 systemd crio escaped uid", file: "systemd_crio_cgroups_pid_in_pod.txt", wantFound: true, wantID: cidCRIO, wantPod: uidCRIO},
		{name: "v2 crio cgroupns relative sibling", file: "cgroups_pid_in_crio_pod.txt", wantFound: true, wantID: cidCRIO},
		{name: "kind nested in docker", file: "cgroups_pid_in_kind_pod.txt", wantFound: true, wantID: cidCRIO, wantPod: uidCRIO},
		{name: "host process", file: "cgroups_pid_not_in_pod.txt"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			c, found, err := k8s.ParseCgroupFile(data, "")
			if err != nil {
				t.Fatalf("ParseCgroupFile: %v", err)
			}
			if found != tt.wantFound || c.ID != tt.wantID || c.PodUID != tt.wantPod {
				t.Fatalf("got %+v found=%v, want id %q pod %q found=%v", c, found, tt.wantID, tt.wantPod, tt.wantFound)
			}
		})
	}
}

func TestParseCgroupFileSynthetic(t *testing.T) {
	tests := []struct {
		name      string
		data      string
		root      string
		wantFound bool
		wantID    string
		wantPod   string
		wantErr   string
	}{
		{name: "v2 systemd containerd burstable",
			data:      "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidU + ".slice/cri-containerd-" + hex64 + ".scope\n",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "v2 systemd guaranteed",
			data:      "0::/kubepods.slice/kubepods-pod" + uidU + ".slice/cri-containerd-" + hex64 + ".scope\n",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "v2 systemd besteffort crio",
			data:      "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/crio-" + hex64 + ".scope",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "v2 cgroupfs containerd",
			data:      "0::/kubepods/besteffort/pod" + uid + "/" + hex64 + "\n",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "v1 cgroupfs guaranteed",
			data:      "3:pids:/kubepods/pod" + uid + "/" + hex64 + "\n2:memory:/kubepods/pod" + uid + "/" + hex64 + "\n",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "static pod uid is a 32-hex hash",
			data:      "0::/kubepods/burstable/pod0123456789abcdef0123456789abcdef/" + hex64,
			wantFound: true, wantID: hex64, wantPod: "0123456789abcdef0123456789abcdef"},
		{name: "cgroupns relative to another qos",
			data:      "0::/../../../kubepods-besteffort.slice/kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + hex64 + ".scope",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "cgroupns relative cgroupfs",
			data:      "0::/../../besteffort/pod" + uid + "/" + hex64,
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "kind v2 nested under system.slice docker scope",
			data:      "0::/system.slice/docker-" + otherHex + ".scope/kubepods/besteffort/pod" + uid + "/" + hex64,
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "kind v2 with cgroup root",
			data:      "0::/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod" + uidU + ".slice/cri-containerd-" + hex64 + ".scope",
			root:      "/kubelet.slice",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "configured cgroup root",
			data:      "9:pids:/test-x/kubepods/burstable/pod" + uid + "/" + hex64,
			root:      "/test-x",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "pid in pod cgroup but no container", data: "0::/kubepods/burstable/pod" + uid + "\n"},
		{name: "plain docker container is not a pod", data: "0::/docker/" + hex64 + "\n"},
		{name: "crio conmon is not a container",
			data: "0::/kubepods.slice/kubepods-pod" + uidU + ".slice/crio-conmon-" + hex64 + ".scope"},
		{name: "root cgroup", data: "0::/\n"},
		{name: "empty file", data: ""},
		{name: "uppercase id is not a container id", data: "0::/kubepods/pod" + uid + "/" + strings.ToUpper(hex64)},
		{name: "63 hex is not a container id", data: "0::/kubepods/pod" + uid + "/" + hex64[1:]},
		{name: "systemd slice with unescaped dashes",
			data:      "0::/kubepods.slice/kubepods-pod" + uid + ".slice/cri-containerd-" + hex64 + ".scope",
			wantFound: true, wantID: hex64, wantPod: uid},
		{name: "systemd slice with a bad uid", data: "0::/kubepods.slice/kubepods-pod" + uidU[1:] + ".slice/cri-containerd-" + hex64 + ".scope"},

		{name: "user delegation forging a pod path",
			data:    "0::/user.slice/user-1000.slice/user@1000.service/kubepods/burstable/pod" + uid + "/" + hex64,
			wantErr: "not under kubelet's hierarchy"},
		{name: "forged path under wrong cgroup root",
			data: "0::/other/kubepods/pod" + uid + "/" + hex64, root: "/test-x",
			wantErr: "not under kubelet's hierarchy"},
		{name: "relative path leaving kubepods",
			data:    "0::/../../../../user.slice/kubepods/pod" + uid + "/" + hex64,
			wantErr: "not under kubelet's hierarchy"},
		{name: "dotdot in the middle", data: "0::/kubepods/../pod" + uid + "/" + hex64, wantErr: "not under kubelet's hierarchy"},
		{name: "pod without kubepods", data: "0::/pod" + uid + "/" + hex64, wantErr: "not under kubelet's hierarchy"},
		{name: "conflicting containers",
			data:    "3:pids:/kubepods/pod" + uid + "/" + hex64 + "\n2:memory:/kubepods/pod" + uid + "/" + otherHex + "\n",
			wantErr: "disagrees"},
		{name: "conflicting pods",
			data:    "3:pids:/kubepods/pod" + uid + "/" + hex64 + "\n2:memory:/kubepods/pod" + uidInit + "/" + hex64 + "\n",
			wantErr: "disagrees"},
		{name: "duplicate hierarchy", data: "0::/kubepods/pod" + uid + "/" + hex64 + "\n0::/\n", wantErr: "listed twice"},
		{name: "malformed line", data: "garbage\n", wantErr: "malformed"},
		{name: "relative path without leading slash", data: "0::kubepods/pod" + uid + "/" + hex64, wantErr: "malformed"},
		{name: "non-numeric hierarchy", data: "x::/\n", wantErr: "malformed"},
		{name: "blank line in the middle", data: "0::/\n\n1:pids:/\n", wantErr: "malformed"},
		{name: "bad cgroup root", data: "0::/\n", root: "relative", wantErr: "clean absolute path"},
		{name: "too large", data: strings.Repeat("0::/\n", k8s.MaxCgroupFileSize), wantErr: "larger than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, found, err := k8s.ParseCgroupFile([]byte(tt.data), tt.root)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if found {
					t.Fatalf("found = true with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCgroupFile: %v", err)
			}
			if found != tt.wantFound || c.ID != tt.wantID || c.PodUID != tt.wantPod {
				t.Fatalf("got %+v found=%v, want id %q pod %q found=%v", c, found, tt.wantID, tt.wantPod, tt.wantFound)
			}
		})
	}
}
