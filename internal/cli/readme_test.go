package cli

import (
	"io"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Every flag of every command, and its environment twin, is in the README's
// configuration table: the docs stay true to the code.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(readme)
	envOf := regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`)
	root := newRoot(&env{environ: map[string]string{}, stdout: io.Discard, stderr: io.Discard})
	var cmds []*cobra.Command
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			cmds = append(cmds, sub)
			walk(sub)
		}
	}
	walk(root)
	for _, cmd := range cmds {
		cmd.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "help" {
				return
			}
			if !strings.Contains(doc, "`--"+f.Name) {
				t.Errorf("relay %s --%s is not in README.md", cmd.Name(), f.Name)
			}
			if m := envOf.FindStringSubmatch(f.Usage); m != nil && !strings.Contains(doc, "`"+m[1]+"`") {
				t.Errorf("relay %s --%s: env %s is not in README.md", cmd.Name(), f.Name, m[1])
			}
		})
	}
}
