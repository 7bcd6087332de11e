import { expect, test } from "bun:test";
import net from "node:net";
import { isIP, isIPv4, isIPv6 } from "./ip.ts";

const CASES = [
  "1.2.3.4",
  "0.0.0.0",
  "255.255.255.255",
  "256.1.1.1",
  "01.2.3.4",
  "1.2.3",
  "1.2.3.4.5",
  "1..2.3",
  "a.b.c.d",
  "",
  " 1.2.3.4",
  "1.2.3.4 ",
  "::",
  "::1",
  "1::",
  "fe80::1%eth0",
  "fe80::1%",
  "2001:db8::8a2e:370:7334",
  "2001:0db8:0000:0000:0000:ff00:0042:8329",
  "1:2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7:8:9",
  "1:2:3:4:5:6:7",
  "1:2:3:4:5:6:7::",
  "::1:2:3:4:5:6:7",
  "1::2::3",
  ":1:2:3:4:5:6:7:8",
  "1:2:3:4:5:6:7:8:",
  "12345::",
  "::ffff:1.2.3.4",
  "::ffff:1.2.3.256",
  "1:2:3:4:5:6:1.2.3.4",
  "1:2:3:4:5:6:7:1.2.3.4",
  "::1.2.3.4",
  "g::1",
  "[::1]",
  "1:2:3:4:5::1.2.3.4",
  "ABCD:EF01::",
  "localhost",
  "example.com",
  "1.2.3.4:80",
];

test("isIPv4, isIPv6 and isIP agree with node:net on valid and invalid forms", () => {
  for (const c of CASES) {
    expect([c, isIPv4(c)]).toEqual([c, net.isIPv4(c)]);
    expect([c, isIPv6(c)]).toEqual([c, net.isIPv6(c)]);
    expect([c, isIP(c)]).toEqual([c, net.isIP(c) as 0 | 4 | 6]);
  }
});
