/**
 * Unit tests for the error types that decide behaviour: a connection that ended early is an
 * interruption (what arrived is kept for a resume), data unlike what its sender announced is a
 * checksum failure, and any other protocol error is neither; an object store's failure says which
 * failure by its code.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  ChecksumMismatchError,
  ClosedEarlyError,
  interruptionOf,
  ProtocolError,
} from "../lib/errors.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { FrameReader } from "../lib/frame_reader.ts";
import { BucketError, S3Bucket } from "../lib/s3_bucket.ts";
import { receiveData } from "../lib/transfer.ts";
import { hashArena } from "../lib/xxh3.ts";
import { bytesReader, concat, dataFrame, dataWithEnd } from "./wire.ts";

const sink = { write: () => Promise.resolve() };

async function received(bytes: Uint8Array): Promise<unknown> {
  await hashArena();
  return await receiveData(new FrameReader(bytesReader(bytes, 7)), sink).then(
    () => assert.fail("the transfer should have failed"),
    (error) => error,
  );
}

Deno.test("a connection that ends mid-frame or mid-transfer is an interruption", async () => {
  const data = new TextEncoder().encode("twelve bytes");
  for (const bytes of [dataFrame(data).subarray(0, 9), dataFrame(data)]) {
    const error = await received(bytes);
    assert.ok(error instanceof ClosedEarlyError, String(error));
    assert.ok(error instanceof ProtocolError, "still a protocol error");
    assert.equal(interruptionOf(error), "connection closed");
  }
});

Deno.test("data unlike what its sender announced is a checksum mismatch, not an interruption", async () => {
  const data = new TextEncoder().encode("twelve bytes");
  const end = await dataWithEnd(data);
  const wrongSum = concat([dataFrame(new TextEncoder().encode("twelve bytez")), end.subarray(17)]);
  const wrongSize = concat([
    dataFrame(data.subarray(0, 11)),
    encodeControl(FrameType.END, { size: 12, checksum: "xxh128:00" }),
  ]);
  for (
    const [bytes, message] of [[wrongSum, /^Checksum mismatch/], [wrongSize, /^Size/]] as const
  ) {
    const error = await received(bytes);
    assert.ok(error instanceof ChecksumMismatchError, String(error));
    assert.match((error as Error).message, message);
    assert.equal(interruptionOf(error), null);
  }
});

Deno.test("other protocol errors are not interruptions", () => {
  assert.equal(interruptionOf(new ProtocolError("Connection closed, says the text")), null);
  assert.equal(interruptionOf(new Deno.errors.ConnectionReset("reset")), "connection reset");
});

Deno.test("an object store's failure carries the store's own code, not only its text", () => {
  const bucket = new S3Bucket({
    bucket: "ferry",
    prefix: "",
    endpoint: "http://127.0.0.1:9",
    credentials: { accessKeyId: "KEY", secretAccessKey: "SECRET" },
    timeoutMs: 1000,
  });
  const xml = "<Error><Code>PreconditionFailed</Code><Message>At least one</Message></Error>";
  const failure = bucket.failure(412, xml, "PUT", "a.bin");
  assert.ok(failure instanceof BucketError);
  assert.equal(failure.reply, "PreconditionFailed");
  assert.equal(failure.code, "io", "the client is told io");
  assert.equal(bucket.failure(500, "", "GET", null).reply, "HTTP 500");
});
