//go:build !byzantine

package node

import (
	"strings"
	"testing"
)

func TestReleaseBuildRefusesByzantineModes(t *testing.T) {
	c := newTestCluster(t, 4)
	_, err := New(Config{Genesis: c.genesis, Key: c.keys[0], InMemory: true, Byzantine: ByzantineEquivocate})
	if err == nil || !strings.Contains(err.Error(), "test builds") {
		t.Fatalf("release build accepted a Byzantine mode: %v", err)
	}
	_, err = New(Config{Genesis: c.genesis, Key: c.keys[0], InMemory: true, Byzantine: "lie-a-little"})
	if err == nil || !strings.Contains(err.Error(), "unknown Byzantine mode") {
		t.Fatalf("unknown mode: %v", err)
	}
}
