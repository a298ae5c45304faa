package standby

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestSlotList(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"", []string{}},
		{"standby1", []string{"standby1"}},
		{" a , b ", []string{"a", "b"}},
		{`"Odd ""name""", b`, []string{`Odd "name"`, "b"}},
	}
	for _, tt := range tests {
		if got := SlotList(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("SlotList(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// fakeDB answers QueryRow with row; the other methods are unused here.
type fakeDB struct {
	DB
	queries int
	row     func(dest ...any) error
}

func (f *fakeDB) QueryRow(context.Context, string, ...any) pgx.Row {
	f.queries++
	return rowFunc(f.row)
}

type rowFunc func(dest ...any) error

func (r rowFunc) Scan(dest ...any) error { return r(dest...) }

func TestWaitBeforePostgres17AsksOnce(t *testing.T) {
	// Before 17, current_setting('synchronized_standby_slots', true) is NULL.
	db := &fakeDB{row: func(dest ...any) error {
		*dest[0].(*string) = "0/1000"
		*dest[1].(**string) = nil
		return nil
	}}
	w := New(db)
	for range 3 {
		if err := w.Wait(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if db.queries != 1 {
		t.Errorf("%d queries for 3 waits, want 1", db.queries)
	}
}

func TestWaitNoStandbySlotsNeverPolls(t *testing.T) {
	empty := ""
	db := &fakeDB{row: func(dest ...any) error {
		*dest[0].(*string) = "0/1000"
		*dest[1].(**string) = &empty
		return nil
	}}
	if err := New(db).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if db.queries != 1 {
		t.Errorf("%d queries, want 1 (the position and the setting)", db.queries)
	}
}
