//go:build !failpoints

package failpoint

const compiled = false
