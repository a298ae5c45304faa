package batch

// Flush hands out the complete transactions and keeps the open one, as Cut
// does when nothing is Ready; the tests use it to cut at the age limit.
func (b *Batcher) Flush() Batch {
	if b.Replaying() {
		return Batch{}
	}
	return b.take(b.committed)
}
