package event

import (
	"context"
	"testing"
)

func TestBudget(t *testing.T) {
	b := NewBudget(1000)
	small := Event{Context: make([]byte, 100)} // 100 + overhead
	huge := Event{Context: make([]byte, 5000)}
	if !b.TryTake(&small) {
		t.Fatal("an empty budget refused a small event")
	}
	if b.TryTake(&huge) {
		t.Fatal("a huge event took the whole budget while another event held part of it")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Take(ctx, &huge); err == nil {
		t.Fatal("Take with an ended context succeeded on a budget in use")
	}
	b.Give(All([]Event{small}))
	if !b.TryTake(&huge) {
		t.Fatal("an event larger than the budget cannot take all of a whole budget")
	}
	if b.TryTake(&Event{}) {
		t.Fatal("the budget gave more than its capacity")
	}
	b.Give(All([]Event{huge}))
	if !b.TryTake(&Event{Context: make([]byte, 1000)}) {
		t.Fatal("the budget is not whole after every event was given back")
	}
}
