package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadProjectionSpecs(t *testing.T) {
	home := t.TempDir()
	if specs, err := loadProjectionSpecs(home); err != nil || specs != nil {
		t.Fatalf("no file: %v %v", specs, err)
	}
	spec := `{"projections":[{"name":"orders-by-customer","version":1,"stream_prefix":"order-","key":"/customer","reduce":[{"op":"count","as":"orders"}]}]}`
	if err := os.WriteFile(filepath.Join(home, "projections.json"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	specs, err := loadProjectionSpecs(home)
	if err != nil || len(specs) != 1 || specs[0].Name != "orders-by-customer" {
		t.Fatalf("one spec: %+v %v", specs, err)
	}
	if err := os.WriteFile(filepath.Join(home, "projections.yaml"), []byte("projections: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadProjectionSpecs(home); err == nil || !strings.Contains(err.Error(), "keep one") {
		t.Fatalf("two files: %v", err)
	}
	os.Remove(filepath.Join(home, "projections.yaml"))
	bad := `{"projections":[{"name":"x","version":1,"key":"/k","reduce":[{"op":"avg","as":"a"}]}]}`
	if err := os.WriteFile(filepath.Join(home, "projections.json"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadProjectionSpecs(home); err == nil || !strings.Contains(err.Error(), "avg") {
		t.Fatalf("unknown reduce op: %v", err)
	}
}
