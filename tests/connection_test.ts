/**
 * Unit tests for what client and server share about a connection: `host:port` as both write it,
 * hosts as users give them, closing twice, the one reading of a resolver's failure, and the
 * watchdogs' tick.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  closeQuietly,
  formatAddr,
  formatHostPort,
  isUnresolvedHost,
  normalizeHost,
  watchInterval,
} from "../lib/connection.ts";
import { LegacySession } from "../lib/legacy.ts";

Deno.test("host:port brackets IPv6, on the client's side, the server's and the seed's", () => {
  assert.equal(formatHostPort("::1", 9000), "[::1]:9000");
  assert.equal(formatHostPort("127.0.0.1", 9000), "127.0.0.1:9000");
  assert.equal(formatAddr({ transport: "tcp", hostname: "::1", port: 1 }), "[::1]:1");
  assert.equal(normalizeHost("[::1]"), "::1");
  assert.equal(normalizeHost("files.example"), "files.example");
  // The seed protocol's session wrote `::1:9000`, unlike the others.
  assert.equal(new LegacySession("::1", 9000).target, "[::1]:9000");
  assert.equal(new LegacySession("[::1]", 9000).target, "[::1]:9000");
});

Deno.test("closing quietly twice is fine", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  closeQuietly(listener);
  closeQuietly(listener);
  assert.throws(() => listener.close(), Deno.errors.BadResource);
});

Deno.test("a host that does not resolve is told from other failures", async () => {
  const error = await Deno.connect({ hostname: "no-such-host.invalid", port: 9 }).then(
    (conn) => conn.close(),
    (error) => error,
  );
  assert.equal(isUnresolvedHost(error), true, String(error));
  assert.equal(isUnresolvedHost(new Deno.errors.ConnectionRefused("refused")), false);
  assert.equal(isUnresolvedHost("failed to lookup"), false);
});

Deno.test("a watchdog ticks at a quarter of its limit, between 50 ms and a second", () => {
  assert.equal(watchInterval(400), 100);
  assert.equal(watchInterval(100), 50);
  assert.equal(watchInterval(120_000), 1000);
  assert.equal(watchInterval(Infinity), 1000);
});
