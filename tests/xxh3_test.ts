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

const referenceHasher = await createXXHash128();

function reference(bytes: Uint8Array): string {
  referenceHasher.init();
  referenceHasher.update(bytes);
  return referenceHasher.digest("hex");
}

function hashOf(bytes: Uint8Array): string {
  const hasher = new Xxh3Hasher();
  hasher.update(bytes);
  return hasher.digest();
}

/**
 * A generator of random bytes from a seed (mulberry32), so that a failure names its seed and
 * can be run again.
 */
function seeded(seed: number): (length: number) => Uint8Array {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6D2B79F5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t ^= t + Math.imul(t ^ (t >>> 7), 61 | t);
    return (t ^ (t >>> 14)) >>> 0;
  };
  return (length) => Uint8Array.from({ length }, () => next() & 255);
}

const SEED = crypto.getRandomValues(new Uint32Array(1))[0];

/**
 * Lengths of every class the hash treats apart: 0, 1-3, 4-8, 9-16, 17-128, 129-240 (the short
 * paths), then long inputs around the stripe (64), block (1024) and piece (64 KiB) edges.
 */
function lengthsOfEveryClass(): number[] {
  const lengths = Array.from({ length: 301 }, (_, i) => i);
  for (const edge of [1024, 2048, 4096, 16384, 65536, 131072]) {
    for (const delta of [-65, -64, -63, -1, 0, 1, 63, 64, 65]) lengths.push(edge + delta);
  }
  return lengths;
}

/** Bytes with no short period, the same on every run. */
function pattern(length: number): Uint8Array {
  return Uint8Array.from({ length }, (_, i) => (i * 31 + (i >> 8)) & 255);
}

Deno.test("xxh3 matches the reference for every length up to 2100 bytes", () => {
  // Covers each short path (0, 1-3, 4-8, 9-16, 17-128, 129-240), and long inputs across the
  // first two 1024-byte blocks, where the accumulators are scrambled.
  const bytes = randomBytes(2100);
  for (let length = 0; length <= bytes.length; length++) {
    const input = bytes.subarray(0, length);
    assert.equal(hashOf(input), reference(input), `length ${length}`);
  }
});

Deno.test("xxh3 matches the reference on many random inputs of every length class", () => {
  const random = seeded(SEED);
  for (const length of lengthsOfEveryClass()) {
    // Random bytes, and the extremes: all zero, and all ones (every carry of the 128-bit products).
    const inputs = [
      ...Array.from({ length: length <= 300 ? 8 : 2 }, () => random(length)),
      new Uint8Array(length),
      new Uint8Array(length).fill(255),
    ];
    for (const [i, input] of inputs.entries()) {
      assert.equal(hashOf(input), reference(input), `length ${length}, input ${i}, seed ${SEED}`);
    }
  }
});

Deno.test("xxh3 gives the reference hash for random splits, digests along the way included", () => {
  // Inputs grow across the short paths' limit (240 bytes) in pieces of every size, including
  // empty ones; a digest taken between pieces must not disturb what follows.
  const random = seeded(SEED);
  const lengths = [...lengthsOfEveryClass().filter((length) => length % 7 === 0), 4096, 70_000];
  for (const length of lengths) {
    const input = random(length);
    const hasher = new Xxh3Hasher();
    let offset = 0;
    while (offset < length) {
      const size = random(1)[0] % 3 === 0 ? 0 : 1 + random(2)[0] * (length > 1000 ? 40 : 1);
      const piece = input.subarray(offset, Math.min(length, offset + size));
      hasher.update(piece);
      offset += piece.length;
      if (random(1)[0] < 64) {
        const prefix = input.subarray(0, offset);
        assert.equal(hasher.digest(), reference(prefix), `${offset} of ${length}, seed ${SEED}`);
      }
    }
    assert.equal(hasher.digest(), reference(input), `length ${length}, seed ${SEED}`);
  }
});

Deno.test("xxh3 matches xxhsum -H2 on long inputs", () => {
  assert.equal(hashOf(pattern(1000)), "5b9a536290e85d630dc54da2182285f1");
  assert.equal(hashOf(pattern(100000)), "1ceab015e15e2ba199dbd27fc89c5372");
});

Deno.test("xxh3 gives the same hash however the input is split", () => {
  // Longer than the kernel's 64 KiB piece, so splits land inside pieces and on their edges.
  const bytes = randomBytes(200_000);
  const expected = reference(bytes);
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
    assert.equal(pieces.digest(), reference(short), `${length} bytes in pieces of 63`);
  }
});

Deno.test("xxh3 clones go on independently", () => {
  const bytes = randomBytes(5000);
  // Forks in every short class, at the short paths' limit and around the first block.
  for (const at of [0, 1, 3, 4, 8, 9, 16, 17, 100, 128, 129, 239, 240, 241, 1023, 1024, 4999]) {
    const hasher = new Xxh3Hasher();
    hasher.update(bytes.subarray(0, at));
    const copy = hasher.clone();
    hasher.update(bytes.subarray(at));
    assert.equal(copy.digest(), reference(bytes.subarray(0, at)), `clone at ${at}`);
    assert.equal(hasher.digest(), reference(bytes), `original after clone at ${at}`);
  }
});

Deno.test("xxh3 hashers interleaved in one process do not disturb each other", () => {
  // All hashers share one kernel and its memory; each update must bring its own state.
  const a = randomBytes(150_000);
  const b = randomBytes(150_000);
  const first = new Xxh3Hasher();
  const second = new Xxh3Hasher();
  for (let i = 0; i < a.length; i += 10_000) {
    first.update(a.subarray(i, i + 10_000));
    second.update(b.subarray(i, i + 10_000));
  }
  assert.equal(first.digest(), reference(a));
  assert.equal(second.digest(), reference(b));
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
