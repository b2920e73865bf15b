/**
 * Unit tests of lib/admission.ts: the address a connection is counted under (IPv4-mapped IPv6,
 * IPv6 /64 blocks) and the two pools' arithmetic. The real server's use of both is tested end to
 * end in tests/hostile_test.ts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { addressKey, Admission, RECLAIM_AFTER_MS } from "../lib/admission.ts";

Deno.test("addressKey: IPv4 as is, IPv4-mapped IPv6 as its IPv4 address, IPv6 by its /64", () => {
  const cases: [string, string][] = [
    ["127.0.0.2", "127.0.0.2"],
    ["::ffff:127.0.0.2", "127.0.0.2"],
    ["::FFFF:192.0.2.7", "192.0.2.7"],
    ["::ffff:7f00:2", "127.0.0.2"],
    ["0:0:0:0:0:ffff:c000:0207", "192.0.2.7"],
    ["[::ffff:10.1.2.3]", "10.1.2.3"],
    ["2001:db8:0:1::42", "2001:db8:0:1::/64"],
    ["2001:db8:0:1:ffff:1:2:3", "2001:db8:0:1::/64"],
    ["2001:DB8:0:1::43", "2001:db8:0:1::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    // An IPv4-compatible or other embedded form that is not ::ffff: stays IPv6.
    ["64:ff9b::192.0.2.7", "64:ff9b:0:0::/64"],
  ];
  for (const [input, key] of cases) assert.equal(addressKey(input), key, input);
  // Two addresses in one /64 share a key; in different /64s they do not.
  assert.equal(addressKey("2001:db8::1"), addressKey("2001:db8::2"));
  assert.notEqual(addressKey("2001:db8:0:1::1"), addressKey("2001:db8:0:2::1"));
  // Not an address at all: counted under itself.
  assert.equal(addressKey("not:an:address:::"), "not:an:address:::");
});

Deno.test("Admission: per-address limit, handshake pool eviction, established limit", () => {
  const admission = new Admission<string>({
    maxConnections: 2,
    maxHandshakes: 2,
    maxPerAddress: 2,
  });
  const a1 = admission.admit("10.0.0.1", "a1");
  const a2 = admission.admit("::ffff:10.0.0.1", "a2");
  assert.ok("ticket" in a1 && "ticket" in a2);
  assert.equal(a1.evicted, undefined);
  // The mapped form is the same address: a third is over its share.
  assert.deepEqual(admission.admit("10.0.0.1", "a3"), {
    refused: { reason: "address", limit: 2, key: "10.0.0.1" },
  });
  // The handshake pool is full: a newcomer from elsewhere evicts the oldest.
  const b1 = admission.admit("10.0.0.2", "b1");
  assert.ok("ticket" in b1);
  assert.equal(b1.evicted?.value, "a1");
  assert.equal(admission.handshaking, 2);
  // An evicted connection cannot become established; the others can.
  assert.equal(admission.establish(a1.ticket), false);
  assert.equal(admission.establish(a2.ticket), true);
  assert.equal(admission.establish(b1.ticket), true);
  assert.equal(admission.established, 2);
  // Every established slot taken: refused at the door.
  assert.deepEqual(admission.admit("10.0.0.3", "c1"), { refused: { reason: "full", limit: 2 } });
  // Closing frees the slot and the address's share; releasing twice changes nothing.
  admission.release(a1.ticket);
  admission.release(a2.ticket);
  admission.release(a2.ticket);
  assert.equal(admission.established, 1);
  const c1 = admission.admit("10.0.0.1", "c1");
  assert.ok("ticket" in c1);
  // A handshake that completes when the established pool has filled meanwhile stays out.
  const d1 = admission.admit("10.0.0.4", "d1");
  assert.ok("ticket" in d1);
  assert.equal(admission.establish(c1.ticket), true);
  assert.equal(admission.establish(d1.ticket), false);
});

Deno.test("Admission: maxPerAddress 0 means no per-address limit", () => {
  const admission = new Admission<number>({
    maxConnections: 100,
    maxHandshakes: 100,
    maxPerAddress: 0,
  });
  for (let i = 0; i < 50; i++) assert.ok("ticket" in admission.admit("10.0.0.1", i));
});

Deno.test("Admission: a full pool gives the slot of the connection idle longest between requests to a newcomer that completes its handshake", () => {
  // How long each established connection has sat between requests; absent: in a request.
  const idle = new Map<string, number>();
  const reclaimed: string[] = [];
  const admission = new Admission<string>(
    { maxConnections: 2, maxHandshakes: 4, maxPerAddress: 0 },
    {
      idleFor: (value) => idle.get(value),
      reclaimed: (ticket) => void reclaimed.push(ticket.value),
    },
  );
  const a = admission.admit("10.0.0.1", "a");
  const b = admission.admit("10.0.0.1", "b");
  assert.ok("ticket" in a && "ticket" in b);
  assert.ok(admission.establish(a.ticket) && admission.establish(b.ticket));
  // Both in a request, or between two quick ones: the newcomer is refused at the door.
  idle.set("a", RECLAIM_AFTER_MS - 1);
  assert.deepEqual(admission.admit("10.0.0.2", "c"), { refused: { reason: "full", limit: 2 } });
  // Both idle long enough: the newcomer is let in, but nobody leaves until its handshake is done.
  idle.set("a", RECLAIM_AFTER_MS + 5000);
  idle.set("b", RECLAIM_AFTER_MS + 9000);
  const c = admission.admit("10.0.0.2", "c");
  const d = admission.admit("10.0.0.3", "d");
  assert.ok("ticket" in c && "ticket" in d);
  assert.deepEqual(reclaimed, []);
  assert.equal(admission.establish(c.ticket), true);
  assert.deepEqual(reclaimed, ["b"], "the idlest gave up its slot");
  assert.equal(admission.established, 2);
  // The next newcomer takes a's slot; then none is left to take.
  idle.set("c", 0);
  assert.equal(admission.establish(d.ticket), true);
  assert.deepEqual(reclaimed, ["b", "a"]);
  idle.set("d", 0);
  const e = admission.admit("10.0.0.4", "e");
  assert.deepEqual(e, { refused: { reason: "full", limit: 2 } });
  // The reclaimed connections close later: releasing them does not free a slot twice.
  admission.release(b.ticket);
  admission.release(a.ticket);
  assert.equal(admission.established, 2);
  admission.release(c.ticket);
  assert.equal(admission.established, 1);
});
