/**
 * Unit tests for the buffer pool: buffers shrink under load instead of memory growing with the
 * number of transfers, and released buffers are reused.
 *
 * @module
 */

import assert from "node:assert/strict";
import { BufferPool } from "../lib/buffer_pool.ts";

Deno.test("buffers shrink to fit the budget but never below the minimum", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 4096, minBufferSize: 128 });
  const sizes = Array.from({ length: 8 }, () => pool.lease().byteLength);
  assert.deepEqual(sizes, [1024, 1024, 1024, 1024, 128, 128, 128, 128]);
  assert.equal(pool.leased, 4096 + 4 * 128);
});

Deno.test("a small request gets a small buffer", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 4096, minBufferSize: 128 });
  assert.equal(pool.lease(100).byteLength, 100);
  assert.equal(pool.lease(5000).byteLength, 1024);
});

Deno.test("released buffers are reused and the budget recovers", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 2048, minBufferSize: 128 });
  const a = pool.lease();
  const b = pool.lease();
  assert.equal(pool.lease().byteLength, 128);
  pool.release(a);
  pool.release(b);
  assert.equal(pool.leased, 128);
  const c = pool.lease();
  assert.ok(c === a || c === b, "a released buffer comes back");
});

Deno.test("a detached buffer is accounted for but not reused", () => {
  const pool = new BufferPool({ bufferSize: 1024, budget: 4096 });
  const a = pool.lease();
  const moved = a.transfer();
  pool.release(a, 1024);
  assert.equal(pool.leased, 0);
  assert.notEqual(pool.lease(), a);
  assert.equal(moved.byteLength, 1024);
});
