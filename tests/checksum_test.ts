/**
 * Unit tests for the end-to-end checksum: it must be XXH3-128 exactly as `xxhsum -H2` prints
 * it, since docs/protocol.md promises that to other implementations.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createChecksum } from "../lib/checksum.ts";

Deno.test("checksum matches the xxhsum -H2 test vectors", async () => {
  const hello = await createChecksum();
  hello.update(new TextEncoder().encode("hello"));
  assert.equal(hello.digest(), "xxh128:b5e9c1ad071b3e7fc779cfaa5e523818");
  const empty = await createChecksum();
  assert.equal(empty.digest(), "xxh128:99aa06d3014798d86001c324468d497f");
});

Deno.test("checksum is the same however the bytes are split", async () => {
  const bytes = crypto.getRandomValues(new Uint8Array(65536));
  const whole = await createChecksum();
  whole.update(bytes);
  const pieces = await createChecksum();
  for (let i = 0; i < bytes.length; i += 7777) pieces.update(bytes.subarray(i, i + 7777));
  assert.equal(pieces.digest(), whole.digest());
  bytes[500] ^= 1;
  const flipped = await createChecksum();
  flipped.update(bytes);
  assert.notEqual(flipped.digest(), whole.digest());
});
