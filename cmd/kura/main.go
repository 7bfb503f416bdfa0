// Command kura is an agentless backup and recovery tool for virtual machines.
package main

import (
	"os"

	"github.com/kurabackup/kura/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
