/**
 * Unit tests for the end-to-end checksum: it must be XXH3-128 exactly as `xxhsum -H2` prints
 * it, since docs/protocol.md promises that to other implementations.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createChecksum } from "../lib/checksum.ts";
import { evalUnderV8Flags } from "./harness.ts";

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

Deno.test("the portable build gives the same checksums as the SIMD kernel, forks included", async () => {
  const bytes = new Uint8Array(3 * 65536 + 77);
  for (let i = 0; i < bytes.length; i += 65536) {
    crypto.getRandomValues(bytes.subarray(i, i + 65536));
  }
  for (const length of [0, 5, 16, 17, 128, 129, 240, 241, 1024, 65536, bytes.length]) {
    const simd = await createChecksum();
    const portable = await createChecksum({ portable: true });
    simd.update(bytes.subarray(0, length));
    portable.update(bytes.subarray(0, length));
    assert.equal(portable.digest(), simd.digest(), `${length} bytes`);
  }
  const simd = await createChecksum();
  const portable = await createChecksum({ portable: true });
  simd.update(bytes.subarray(0, 1000));
  portable.update(bytes.subarray(0, 1000));
  const [simdFork, portableFork] = [await simd.fork(), await portable.fork()];
  assert.equal(portable.digest(), simd.digest(), "at the fork");
  simdFork.update(bytes.subarray(1000));
  portableFork.update(bytes.subarray(1000));
  assert.equal(portableFork.digest(), simdFork.digest(), "after the fork");
  await assert.rejects(() => portable.fork(), /forked after digest/);
});

Deno.test("the portable build and the SIMD kernel agree on every length class, in odd pieces", async () => {
  // Lengths in each short path (0, 1-3, 4-8, 9-16, 17-128, 129-240) and long ones across the
  // stripe, block and 64 KiB piece edges; each input fed in pieces of a different odd size.
  const lengths = [0, 1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 96, 97, 127, 128, 129, 200];
  lengths.push(239, 240, 241, 255, 1023, 1024, 1025, 4096, 65535, 65536, 65537, 200_001);
  for (const [i, length] of lengths.entries()) {
    const bytes = crypto.getRandomValues(new Uint8Array(Math.min(length, 65536)));
    const input = new Uint8Array(length).map((_, j) => bytes[j % bytes.length] ^ (j >> 16));
    const step = [1, 3, 5, 7, 13, 61, 65, 241, 1025, 4099][i % 10];
    const simd = await createChecksum();
    const portable = await createChecksum({ portable: true });
    for (let offset = 0; offset < length; offset += step) {
      simd.update(input.subarray(offset, offset + step));
      portable.update(input.subarray(offset, offset + step));
    }
    assert.equal(simd.digest(), portable.digest(), `${length} bytes in pieces of ${step}`);
  }
  // Forks at short points, each then grown past the short paths' limit.
  const input = crypto.getRandomValues(new Uint8Array(3000));
  for (const at of [0, 2, 5, 12, 100, 200, 240, 241]) {
    const simd = await createChecksum();
    const portable = await createChecksum({ portable: true });
    simd.update(input.subarray(0, at));
    portable.update(input.subarray(0, at));
    const [simdFork, portableFork] = [await simd.fork(), await portable.fork()];
    simdFork.update(input.subarray(at));
    portableFork.update(input.subarray(at));
    assert.equal(simd.digest(), portable.digest(), `at the fork at ${at}`);
    assert.equal(simdFork.digest(), portableFork.digest(), `after the fork at ${at}`);
  }
});

Deno.test("without WebAssembly SIMD (no SSE4.1) the checksum falls back, same values", async () => {
  // V8 offers WebAssembly SIMD on x86-64 only with SSE4.1; this flag makes it act as if absent.
  if (Deno.build.arch !== "x86_64") return;
  const script = `
    import { createChecksum } from "./lib/checksum.ts";
    import { simdKernelSupported } from "./lib/xxh3.ts";
    const checksum = await createChecksum();
    checksum.update(new TextEncoder().encode("hello"));
    console.log(JSON.stringify({ simd: simdKernelSupported(), digest: checksum.digest() }));
  `;
  assert.deepEqual(await evalUnderV8Flags("--no-enable-sse4-1", script), {
    simd: false,
    digest: "xxh128:b5e9c1ad071b3e7fc779cfaa5e523818",
  });
});
