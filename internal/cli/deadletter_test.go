package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/outbox-relay/relay/internal/deadletter"
)

func TestDeadLetterSelection(t *testing.T) {
	id := uuid.New()
	tests := []struct {
		name    string
		opts    dlOptions
		args    []string
		wantErr string // "" for none; otherwise a substring of a usage error
	}{
		{name: "ids", args: []string{id.String()}},
		{name: "type", opts: dlOptions{types: []string{"x"}}},
		{name: "age", opts: dlOptions{olderThan: time.Hour}},
		{name: "all", opts: dlOptions{all: true}},
		{name: "nothing named", wantErr: "name the dead letters"},
		{name: "all with a filter", opts: dlOptions{all: true, types: []string{"x"}}, wantErr: "give it alone"},
		{name: "all with an id", opts: dlOptions{all: true}, args: []string{id.String()}, wantErr: "give it alone"},
		{name: "malformed id", args: []string{"nope"}, wantErr: "not an event id"},
		{name: "negative age", opts: dlOptions{newerThan: -time.Second, types: []string{"x"}}, wantErr: "must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := tt.opts.selection(tt.args)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("selection: %v", err)
				}
				if len(tt.args) > 0 && (len(f.IDs) != 1 || f.IDs[0] != id) {
					t.Errorf("ids = %v, want [%s]", f.IDs, id)
				}
				return
			}
			var xe *exitError
			if !errors.As(err, &xe) || xe.code != ExitUsage || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("selection error = %v, want a usage error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestReportReplayNamesMissingIDs(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	var out bytes.Buffer
	err := reportReplay(&out, []uuid.UUID{a, b}, []deadletter.Moved{{ID: a, Inserted: true}})
	if err == nil || !strings.Contains(err.Error(), b.String()) || strings.Contains(err.Error(), a.String()) {
		t.Fatalf("error = %v, want it to name only %s", err, b)
	}
	if !strings.Contains(out.String(), "replayed "+a.String()) || !strings.Contains(out.String(), "1 dead letters moved") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestDeadLetterOutputEscapesControlCharacters(t *testing.T) {
	const clear, title = "\x1b[2J\x1b[32mOK", "\x1b]0;pwned\x07"
	l := deadletter.Letter{ID: uuid.New(), EventType: "t" + clear, Environment: "e" + title,
		Error: "rejected: " + clear, Context: []byte("{\"k\":\"\u009b2J\"}")}
	var list, show bytes.Buffer
	if err := writeLetters(&list, []deadletter.Letter{l}); err != nil {
		t.Fatal(err)
	}
	if err := writeLetter(&show, l); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"list": list.String(), "show": show.String()} {
		for _, c := range []string{"\x1b", "\x07", "\u009b"} {
			if strings.Contains(out, c) {
				t.Errorf("%s contains the control character %q:\n%q", name, c, out)
			}
		}
		if !strings.Contains(out, `t\x1b[2J\x1b[32mOK`) {
			t.Errorf("%s lacks the escaped event type:\n%s", name, out)
		}
	}
	if !strings.Contains(show.String(), `e\x1b]0;pwned\a`) {
		t.Errorf("show lacks the escaped environment:\n%s", show.String())
	}
}

// --json too: a document shown on a terminal carries no raw C1 control or
// bidi override (encoding/json escapes only C0 ones).
func TestDeadLetterJSONEscapesControlCharacters(t *testing.T) {
	l := deadletter.Letter{ID: uuid.New(), EventType: "t\u009b2J\u202e", Context: []byte("{\"k\":\"\u009b\"}")}
	var out bytes.Buffer
	e := &env{stdout: &out}
	if err := writeList(e, []deadletter.Letter{l}, 1, true); err != nil {
		t.Fatal(err)
	}
	if err := writeJSON(e.stdout, l); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"\u009b", "\u202e"} {
		if strings.Contains(out.String(), c) {
			t.Errorf("--json output contains %q raw:\n%q", c, out.String())
		}
	}
}
