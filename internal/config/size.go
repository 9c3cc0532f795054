package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count written as a plain number of bytes or with a binary
// unit: 1048576, 512KiB, 256MiB, 1GiB.
type Size int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// UnmarshalText parses a Size.
func (s *Size) UnmarshalText(b []byte) error {
	t := strings.TrimSpace(string(b))
	num, mult := t, int64(1)
	for _, u := range sizeUnits {
		if v, ok := strings.CutSuffix(t, u.suffix); ok {
			num, mult = strings.TrimSpace(v), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return fmt.Errorf("%q is not a size: write bytes or KiB, MiB, GiB, e.g. 256MiB", t)
	}
	if n > (1<<62)/mult {
		return fmt.Errorf("%q is too large", t)
	}
	*s = Size(n * mult)
	return nil
}

// MarshalText writes the largest unit that divides the size exactly.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s Size) String() string {
	for _, u := range sizeUnits {
		if s != 0 && int64(s)%u.mult == 0 {
			return strconv.FormatInt(int64(s)/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}
