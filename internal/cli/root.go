// Package cli is the relay's command line: the composition root where each
// command builds its parts by hand from the configuration.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/outbox-relay/relay/internal/buildinfo"
	"github.com/outbox-relay/relay/internal/config"
	"github.com/outbox-relay/relay/internal/event"
)

// Exit codes: part of the command-line contract.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitUsage    = 2
	ExitWarning  = 3 // relay status: WARNING
	ExitCritical = 4 // relay status: CRITICAL
	ExitSchema   = 5 // relay run: a change of outbox_event it refuses to apply
)

// env is what every command gets from main instead of reading globals.
type env struct {
	args    []string // the command line, "relay" first
	environ map[string]string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// exitError carries a specific exit code (e.g. a status verdict).
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit %d", e.code)
	}
	return e.err.Error()
}
func (e *exitError) Unwrap() error { return e.err }

// usageError marks a command-line or configuration problem (exit 2).
func usageError(err error) error { return &exitError{code: ExitUsage, err: err} }

// Main runs the command line and returns the process exit code.
// Confirmations (relay deadletter discard) are read from the process's
// standard input.
func Main(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	e := &env{args: append([]string{"relay"}, args...), environ: config.Environ(environ), stdin: os.Stdin, stdout: stdout, stderr: stderr}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var xe *exitError
	var ce *config.Error
	switch {
	case errors.As(err, &ce):
		fmt.Fprintln(stderr, "relay:", ce.Error())
		return ExitUsage
	case errors.As(err, &xe):
		if xe.err != nil {
			fmt.Fprintln(stderr, "relay:", xe.err)
		}
		return xe.code
	case errors.Is(err, event.ErrSchema):
		fmt.Fprintln(stderr, "relay:", err)
		return ExitSchema
	case isFlagError(err):
		fmt.Fprintln(stderr, "relay:", err)
		fmt.Fprintln(stderr, "Run 'relay --help' for usage.")
		return ExitUsage
	}
	fmt.Fprintln(stderr, "relay:", err)
	return ExitFailure
}

// flagError wraps cobra's flag parsing and argument errors so Main can tell
// them apart.
type flagError struct{ err error }

func (f flagError) Error() string { return f.err.Error() }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "relay",
		Short: "Transactional-outbox CDC relay: PostgreSQL outbox_event -> ClickHouse event_log",
		Long: `relay streams the INSERTs into the outbox_event table from a PostgreSQL logical
replication slot (pgoutput), writes them to ClickHouse in batches, and only then
acknowledges the WAL position and deletes the delivered rows.

Every flag has an environment variable twin; a flag given on the command line wins.
Exit codes: 0 clean stop, 1 runtime failure, 2 usage or configuration error,
5 a change of outbox_event that relay run refuses to apply (the message says
what to do); relay status also uses 3 WARNING and 4 CRITICAL.`,
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// Without Args and Run, cobra reports `relay bogus` as a plain error.
	root.Args = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return flagError{errors.New(msg)}
	}
	root.RunE = func(cmd *cobra.Command, _ []string) error { return cmd.Help() }
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return flagError{err} })
	root.AddCommand(newRunCmd(e), newMigrateCmd(e), newAPICmd(e), newStatusCmd(e), newDeadLetterCmd(e), newVersionCmd(e))
	return root
}

// noArgs is cobra.NoArgs as a usage error (exit 2).
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return flagError{err}
	}
	return nil
}

func newVersionCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the relay's version",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(e.stdout, "relay", buildinfo.Version)
			return err
		},
	}
}
