package deletion

import "github.com/jackc/pgx/v5/pgtype"

// uuids is a uuid[] parameter in binary format, encoded straight from the
// ids. pgx encodes a plain [][16]byte the same bytes through reflection,
// boxing every element twice (two allocations per id, 20,000 per batch of
// 10,000); here an element is a pointer-shaped value, boxed for free.
type uuids [][16]byte

// Dimensions implements pgtype.ArrayGetter.
func (a uuids) Dimensions() []pgtype.ArrayDimension {
	if a == nil {
		return nil
	}
	return []pgtype.ArrayDimension{{Length: int32(len(a)), LowerBound: 1}}
}

// Index implements pgtype.ArrayGetter.
func (a uuids) Index(i int) any { return uuidRef{&a[i]} }

// IndexType implements pgtype.ArrayGetter.
func (a uuids) IndexType() any { return uuidRef{} }

// uuidRef is one element of uuids.
type uuidRef struct{ id *[16]byte }

// UUIDValue implements pgtype.UUIDValuer.
func (r uuidRef) UUIDValue() (pgtype.UUID, error) {
	return pgtype.UUID{Bytes: *r.id, Valid: true}, nil
}
