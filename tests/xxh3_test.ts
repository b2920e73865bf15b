/**
 * Unit tests for the XXH3-128 implementation in lib/xxh3.ts, against two independent ones:
 * hash-wasm (compiled from the reference C) for every short-path length and block boundary, and
 * values printed by `xxhsum -H2` for long inputs.
 *
 * @module
 */

import assert from "node:assert/strict";
import { createXXHash128 } from "hash-wasm";
import { hashArena, Xxh3Hasher } from "../lib/xxh3.ts";
import { randomBytes } from "./harness.ts";

async function reference(bytes: Uint8Array): Promise<string> {
  const hasher = await createXXHash128();
  hasher.init();
  hasher.update(bytes);
  return hasher.digest("hex");
}

function hashOf(bytes: Uint8Array): string {
  const hasher = new Xxh3Hasher();
  hasher.update(bytes);
  return hasher.digest();
}

/** Bytes with no short period, the same on every run. */
function pattern(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + (i >> 8)) & 255);
}

Deno.test("xxh3 matches the reference for every length up to 2100 bytes", async () => {
  // Covers each short path (0, 1-3, 4-8, 9-16, 17-128, 129-240), and long inputs across the
  // first two 1024-byte blocks, where the accumulators are scrambled.
  const bytes = randomBytes(2100);
  for (let length = 0; length <= bytes.length; length++) {
    const input = bytes.subarray(0, length);
    assert.equal(hashOf(input), await reference(input), `length ${length}`);
  }
});

Deno.test("xxh3 matches xxhsum -H2 on long inputs", () => {
  assert.equal(hashOf(pattern(1000)), "5b9a536290e85d630dc54da2182285f1");
  assert.equal(hashOf(pattern(100000)), "1ceab015e15e2ba199dbd27fc89c5372");
});

Deno.test("xxh3 gives the same hash however the input is split", async () => {
  // Longer than the kernel's 64 KiB piece, so splits land inside pieces and on their edges.
  const bytes = randomBytes(200_000);
  const expected = await reference(bytes);
  const splits = [1, 63, 64, 65, 239, 240, 241, 1024, 65535, 65536, 65537, 131072];
  for (const size of splits) {
    const hasher = new Xxh3Hasher();
    for (let i = 0; i < bytes.length; i += size) hasher.update(bytes.subarray(i, i + size));
    assert.equal(hasher.digest(), expected, `pieces of ${size}`);
  }
  // Irregular pieces, including empty ones.
  const hasher = new Xxh3Hasher();
  let offset = 0;
  for (let i = 0; offset < bytes.length; i++) {
    const size = (i * 7919) % 5000;
    hasher.update(bytes.subarray(offset, offset + size));
    offset += size;
  }
  assert.equal(hasher.digest(), expected, "irregular pieces");
  // Short inputs in pieces take the short paths, from the bytes kept as they came.
  for (const length of [0, 3, 17, 200, 240, 241, 300]) {
    const short = bytes.subarray(0, length);
    const pieces = new Xxh3Hasher();
    for (let i = 0; i < length; i += 63) pieces.update(short.subarray(i, i + 63));
    assert.equal(pieces.digest(), await reference(short), `${length} bytes in pieces of 63`);
  }
});

Deno.test("xxh3 clones go on independently", async () => {
  const bytes = randomBytes(5000);
  for (const at of [0, 100, 240, 241, 1024, 4999]) {
    const hasher = new Xxh3Hasher();
    hasher.update(bytes.subarray(0, at));
    const copy = hasher.clone();
    hasher.update(bytes.subarray(at));
    assert.equal(copy.digest(), await reference(bytes.subarray(0, at)), `clone at ${at}`);
    assert.equal(hasher.digest(), await reference(bytes), `original after clone at ${at}`);
  }
});

Deno.test("xxh3 hashers interleaved in one process do not disturb each other", async () => {
  // All hashers share one kernel and its memory; each update must bring its own state.
  const a = randomBytes(150_000);
  const b = randomBytes(150_000);
  const first = new Xxh3Hasher();
  const second = new Xxh3Hasher();
  for (let i = 0; i < a.length; i += 10_000) {
    first.update(a.subarray(i, i + 10_000));
    second.update(b.subarray(i, i + 10_000));
  }
  assert.equal(first.digest(), await reference(a));
  assert.equal(second.digest(), await reference(b));
});

Deno.test("xxh3 hashes bytes in its arena in place to the same value, however split or mixed", () => {
  const arena = hashArena()!;
  const bytes = pattern(300_000);
  const want = hashOf(bytes);
  // Pieces around the stripe (64) and block (1024) sizes, at aligned and odd places in the arena.
  for (const size of [1, 63, 64, 65, 129, 1024, 1025, 65537, 300_000]) {
    for (const at of [0, 1, 64, 4097]) {
      // Every piece in the arena, or every other one (the rest copied in as usual).
      for (const every of [1, 2]) {
        const hasher = new Xxh3Hasher();
        for (let i = 0; i < bytes.length; i += size) {
          const piece = bytes.subarray(i, i + size);
          if ((i / size) % every !== 0) {
            hasher.update(piece);
            continue;
          }
          const view = arena.subarray(at, at + piece.length);
          view.set(piece);
          hasher.update(view);
        }
        assert.equal(hasher.digest(), want, `pieces of ${size} at ${at}, every ${every}`);
      }
    }
  }
});
