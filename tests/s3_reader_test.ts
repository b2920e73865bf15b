/**
 * The S3 reader's ranges in flight when one of them stalls. The real store cannot be made to stall
 * one range at a chosen moment (tests/s3_faults_test.ts freezes it whole), so these drive
 * {@link S3Reader} through its `get` seam with bodies that behave as the HTTP module's do: a read
 * under way ends with `Interrupted` when the request's signal aborts.
 *
 * @module
 */

import assert from "node:assert/strict";
import { StoreError } from "../lib/errors.ts";
import type { RangeBody } from "../lib/s3_http.ts";
import { S3Reader } from "../lib/s3_reader.ts";

const RANGE = 64 * 1024;

/** A body that sends 1 KiB every 10 ms, so it is never idle, until `signal` aborts. */
function trickle(length: number, signal: AbortSignal): RangeBody {
  let left = length;
  return {
    status: 206,
    ok: true,
    headers: new Headers(),
    length,
    read: (into) =>
      new Promise((resolve, reject) => {
        if (left === 0) return resolve(null);
        const stop = () => {
          clearTimeout(timer);
          reject(new Deno.errors.Interrupted("operation canceled"));
        };
        const timer = setTimeout(() => {
          signal.removeEventListener("abort", stop);
          const n = Math.min(1024, into.length, left);
          left -= n;
          resolve(n);
        }, 10);
        if (signal.aborted) stop();
        else signal.addEventListener("abort", stop, { once: true });
      }),
    cancel: () => {},
  };
}

/** A request the store never answers: it ends only when `signal` aborts. */
function unanswered(signal: AbortSignal): Promise<RangeBody> {
  return new Promise((_, reject) => {
    const stop = () => reject(new Deno.errors.Interrupted("operation canceled"));
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });
}

Deno.test("s3 reader: a range cut because the next range's request went unanswered reports the stall", async () => {
  const reader = await S3Reader.open({
    name: "long.bin",
    size: 3 * RANGE,
    stored: null,
    timeoutMs: 300,
    rangeSize: RANGE,
    ranges: 2,
    // The first range is still arriving when the second's request times out.
    get: (from, _to, signal) =>
      from === 0 ? Promise.resolve(trickle(RANGE, signal)) : unanswered(signal),
  });
  const error = await reader.read(new Uint8Array(RANGE)).then(
    () => assert.fail("the read succeeded"),
    (error) => error,
  );
  reader.close();
  assert.ok(error instanceof StoreError, String(error));
  assert.match(error.message, /^Object store stopped sending "long\.bin" for 0\.3 s$/);
});
