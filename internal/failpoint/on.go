//go:build failpoints

package failpoint

const compiled = true
