package sluice

import (
	"errors"
	"fmt"
	"testing"
)

func TestVersion(t *testing.T) {
	if err := CheckVersion(); err != nil {
		t.Fatal(err)
	}
	v := VersionHex()
	if v>>16 != BindingMajor {
		t.Fatalf("loaded major %d, binding major %d", v>>16, BindingMajor)
	}
	if want := fmt.Sprintf("%d.%d.%d", v>>16, v>>8&0xff, v&0xff); Version() != want {
		t.Fatalf("Version() = %q, hex says %q", Version(), want)
	}
}

func TestVersionMismatch(t *testing.T) {
	cases := []struct{ loaded, built uint }{
		{1 << 16, 0x000100},  // library of another major
		{0x000000, 0x000100}, // library older than the headers
		{1 << 16, 1 << 16},   // headers of another major
	}
	for _, c := range cases {
		err := checkVersion(c.loaded, c.built)
		if !errors.Is(err, ErrVersion) {
			t.Errorf("checkVersion(%#x, %#x) = %v, want ErrVersion", c.loaded, c.built, err)
		}
	}
	if err := checkVersion(0x000203, 0x000100); err != nil {
		t.Errorf("newer minor refused: %v", err)
	}
}
