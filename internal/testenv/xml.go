package testenv

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"text/template"
)

type domainDisk struct {
	Path, Format, Target string
}

type domainSpec struct {
	Name           string
	Owner          string // domain description: ownerTag + PID
	MemoryMiB      int
	Kernel, Initrd string
	Console        string
	Agent          bool
	Disks          []domainDisk
	// BootDisk boots from the first disk (a boot disk) instead of Kernel.
	BootDisk bool
}

// The guest is always TCG (type 'qemu'): KVM guests hang on the CI machines.
var domainTmpl = template.Must(template.New("domain").Funcs(template.FuncMap{"x": xmlEscape}).Parse(`<domain type='qemu'>
  <name>{{x .Name}}</name>
  <description>{{x .Owner}}</description>
  <memory unit='MiB'>{{.MemoryMiB}}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
{{- if .BootDisk}}
    <boot dev='hd'/>
{{- else}}
    <kernel>{{x .Kernel}}</kernel>
    <initrd>{{x .Initrd}}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 mitigations=off</cmdline>
{{- end}}
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
{{- range .Disks}}
    <disk type='file' device='disk'>
      <driver name='qemu' type='{{x .Format}}' cache='none' discard='unmap'/>
      <source file='{{x .Path}}'/>
      <target dev='{{x .Target}}' bus='virtio'/>
    </disk>
{{- end}}
    <serial type='file'>
      <source path='{{x .Console}}' append='on'/>
      <target port='0'/>
    </serial>
{{- if .Agent}}
    <channel type='unix'>
      <target type='virtio' name='org.qemu.guest_agent.0'/>
    </channel>
{{- end}}
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
`))

func xmlEscape(s string) (string, error) {
	var b bytes.Buffer
	if err := xml.EscapeText(&b, []byte(s)); err != nil {
		return "", err
	}
	return b.String(), nil
}

func domainXML(s domainSpec) (string, error) {
	var b bytes.Buffer
	if err := domainTmpl.Execute(&b, s); err != nil {
		return "", fmt.Errorf("domain xml: %w", err)
	}
	return b.String(), nil
}
