// Package e2e holds kura's end-to-end tests: real libvirtd and QEMU (TCG)
// guests backed up, browsed, exported and restored through the engine and
// the kura command line, with the guests' files checked through their
// guest agents. It has no code of its own; see the _test.go files.
package e2e
