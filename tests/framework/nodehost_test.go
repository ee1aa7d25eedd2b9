package framework

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestCheckSubnetsFree: a subnet that overlaps one of this machine's routes
// is refused, naming the route; one no route covers is accepted.
func TestCheckSubnetsFree(t *testing.T) {
	out, err := exec.Command("ip", "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		t.Skipf("no ip(8) here: %v", err)
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		t.Fatal(err)
	}
	var taken string
	for _, r := range routes {
		if strings.Contains(r.Dst, "/") && !strings.HasPrefix(r.Dst, "127.") {
			taken = r.Dst
			break
		}
	}
	if taken == "" {
		t.Skip("this machine has no network route to collide with")
	}
	err = checkSubnetsFree(taken)
	if err == nil || !strings.Contains(err.Error(), taken) {
		t.Errorf("checkSubnetsFree(%s), the machine's own route: %v, want an error naming it", taken, err)
	}
	for _, r := range routes {
		if strings.HasPrefix(r.Dst, "198.51.100.") {
			t.Skip("this machine routes TEST-NET-2")
		}
	}
	if err := checkSubnetsFree("198.51.100.0/24"); err != nil {
		t.Errorf("checkSubnetsFree(TEST-NET-2): %v, want no error", err)
	}
}
