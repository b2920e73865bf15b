/**
 * Unit tests for the token challenge-response: the MAC is exactly the HMAC-SHA256 that earlier
 * builds sent (computed by node:crypto, as they did), so old and new peers still agree, and the
 * comparison and nonces behave.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { authMac, macMatches, newNonce } from "../lib/auth.ts";

Deno.test("authMac is the HMAC-SHA256 of the role, challenge and nonce that peers exchange", async () => {
  const token = new TextEncoder().encode("a token of thirty-two characters");
  const challenge = "c".repeat(64);
  const nonce = "0123456789abcdef".repeat(4);
  for (const role of ["client", "server"] as const) {
    const reference = createHmac("sha256", token)
      .update(`ferry-auth-v1\n${role}\n${challenge}\n${nonce}`)
      .digest("hex");
    assert.equal(await authMac(token, { role, challenge, nonce }), reference, role);
  }
  const client = await authMac(token, { role: "client", challenge, nonce });
  const server = await authMac(token, { role: "server", challenge, nonce });
  assert.notEqual(client, server, "one side's proof is never the other's");
  const otherToken = new TextEncoder().encode("another token, thirty-two chars!");
  assert.notEqual(await authMac(otherToken, { role: "client", challenge, nonce }), client);
});

Deno.test("macMatches accepts only the identical MAC", () => {
  const mac = "ab".repeat(32);
  assert.equal(macMatches(mac, mac), true);
  assert.equal(macMatches(mac, "ab".repeat(31) + "ac"), false, "last digit differs");
  assert.equal(macMatches(mac, "bb" + "ab".repeat(31)), false, "first digit differs");
  assert.equal(macMatches(mac, mac.slice(1)), false, "shorter");
  assert.equal(macMatches(mac, mac + "0"), false, "longer");
  assert.equal(macMatches(mac, ""), false, "empty");
});

Deno.test("newNonce gives 64 fresh hex digits each time", () => {
  const nonces = new Set(Array.from({ length: 100 }, () => newNonce()));
  assert.equal(nonces.size, 100);
  for (const nonce of nonces) assert.match(nonce, /^[0-9a-f]{64}$/);
});
