package cli

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// adviceRE finds "kura WORD..." in a message, with the verb before it.
var adviceRE = regexp.MustCompile(`(?:\b(run|use|see|try|with|then)\s+)?\bkura ((?:[a-z][a-z-]*)(?: [a-z][a-z-]*)*)((?: --[a-z][a-z-]*)*)`)

// TestAdvisedCommandsExist checks every command that kura's messages
// advise ("run kura verify --read-data", "see kura vm list") against the
// real command tree: each named command exists (a group is followed by one
// of its subcommands) and takes the flags named. It reads every string
// literal of kura's non-test sources, so advice added later is checked too.
func TestAdvisedCommandsExist(t *testing.T) {
	root := newApp(nil, nil, nil).rootCommand()
	checked := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, src, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				return true
			}
			for _, m := range adviceRE.FindAllStringSubmatch(s, -1) {
				if msg := checkAdvice(root, m[1], strings.Fields(m[2]), strings.Fields(m[3])); msg != "" {
					t.Errorf("%s: %q advises %q: %s", fset.Position(lit.Pos()), s, strings.TrimSpace(m[0]), msg)
				}
				checked++
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 10 {
		t.Fatalf("only %d pieces of advice found: the scan is broken", checked)
	}
}

// checkAdvice resolves words against the command tree; "" when fine.
func checkAdvice(root *cobra.Command, verb string, words, flags []string) string {
	cmd := root
	for _, w := range words {
		next := findSub(cmd, w)
		if next == nil {
			if cmd == root && (verb == "" || prose[w]) {
				return "" // prose ("a kura repository", "run kura on that host"), not advice
			}
			if cmd == root {
				return "no command " + w
			}
			if !cmd.Runnable() || isGroup(cmd) {
				return "no subcommand " + w + " of " + cmd.CommandPath()
			}
			break // the rest are arguments
		}
		cmd = next
	}
	if isGroup(cmd) && cmd != root {
		return cmd.CommandPath() + " needs a subcommand"
	}
	for _, fl := range flags {
		name := strings.TrimPrefix(fl, "--")
		if cmd.Flags().Lookup(name) == nil && cmd.PersistentFlags().Lookup(name) == nil && cmd.InheritedFlags().Lookup(name) == nil {
			return cmd.CommandPath() + " has no flag " + fl
		}
	}
	return ""
}

func findSub(c *cobra.Command, name string) *cobra.Command {
	for _, s := range c.Commands() {
		if s.Name() == name || s.HasAlias(name) {
			return s
		}
	}
	return nil
}

// isGroup reports whether c only groups subcommands (see strictGroups).
func isGroup(c *cobra.Command) bool { return c.Annotations[groupAnnotation] != "" }

// prose are words that follow "kura" in sentences that name no command.
var prose = map[string]bool{"on": true, "in": true, "as": true, "again": true, "itself": true, "to": true, "and": true}

// TestCheckAdvice: the checker itself tells good advice from bad.
func TestCheckAdvice(t *testing.T) {
	root := newApp(nil, nil, nil).rootCommand()
	for _, tc := range []struct {
		verb         string
		words, flags []string
		ok           bool
	}{
		{"run", []string{"verify"}, []string{"--read-data"}, true},
		{"see", []string{"vm", "list"}, nil, true},
		{"run", []string{"repo", "verify"}, nil, false}, // the advice issue 14 found
		{"run", []string{"repo"}, nil, false},
		{"run", []string{"backup"}, []string{"--fulll"}, false},
		{"run", []string{"frobnicate"}, nil, false},
		{"", []string{"repository"}, nil, true}, // prose
		{"run", []string{"points", "delete", "x"}, []string{"--gc"}, true},
	} {
		if got := checkAdvice(root, tc.verb, tc.words, tc.flags); (got == "") != tc.ok {
			t.Errorf("checkAdvice(%q %v %v) = %q, want ok=%v", tc.verb, tc.words, tc.flags, got, tc.ok)
		}
	}
}

// TestDocumentedCommandsExist checks the command lines of README.md and
// docs/ (lines of shell blocks starting with "kura ") against the real
// command tree: each names an existing command and only its flags.
func TestDocumentedCommandsExist(t *testing.T) {
	root := newApp(nil, nil, nil).rootCommand()
	files, _ := filepath.Glob("../../docs/*.md")
	more, _ := filepath.Glob("../../docs/design/*.md")
	files = append(append(files, "../../README.md"), more...)
	checked := 0
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		inShell := false
		for i, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "```") {
				inShell = !inShell && (line == "```sh" || line == "```")
				continue
			}
			line = strings.TrimSpace(line)
			if !inShell || !strings.HasPrefix(line, "kura ") {
				continue
			}
			if j := strings.Index(line, " #"); j >= 0 {
				line = line[:j]
			}
			var words, flags []string
			for _, f := range strings.Fields(line)[1:] {
				switch {
				case strings.HasPrefix(f, "--"):
					name, _, _ := strings.Cut(f, "=")
					flags = append(flags, name)
				case len(flags) == 0 && regexp.MustCompile(`^[a-z][a-z-]*$`).MatchString(f):
					words = append(words, f)
				}
			}
			if msg := checkAdvice(root, "run", words, flags); msg != "" {
				t.Errorf("%s:%d: %q: %s", file, i+1, line, msg)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Fatalf("only %d documented command lines found: the scan is broken", checked)
	}
}
