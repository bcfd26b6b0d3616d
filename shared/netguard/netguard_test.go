package netguard_test

import (
	"net/netip"
	"testing"

	"github.com/synthstack/byok/shared/netguard"
)

func TestPublic(t *testing.T) {
	for _, s := range []string{"93.184.216.34", "8.8.8.8", "20.50.1.2", "2606:4700:4700::1111", "2603:1030::1"} {
		if !netguard.Public(netip.MustParseAddr(s)) {
			t.Errorf("%s should be public", s)
		}
	}
	for _, s := range []string{"127.0.0.1", "127.1.2.3", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254",
		"169.254.1.1", "0.0.0.0", "0.1.2.3", "100.64.0.1", "192.0.0.170", "240.0.0.1", "::1", "::", "fe80::1", "fc00::1",
		"fd12::1", "fec0::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "::a9fe:a9fe",
		"64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b::a00:5", "224.0.0.1", "ff02::1", "255.255.255.255",
		"192.0.2.1", "198.18.0.1", "2001:db8::1", "2002:7f00:1::1", "2002:a9fe:a9fe::1", "100::1", "fd00:ec2::254"} {
		if netguard.Public(netip.MustParseAddr(s)) {
			t.Errorf("%s must not count as public", s)
		}
	}
}
