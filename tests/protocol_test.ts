/**
 * Unit tests for the wire format: preamble, frame headers, control messages, and the frame
 * reader on truncated and corrupt input.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ProtocolError, RefusedError } from "../lib/errors.ts";
import {
  encodeListing,
  parseEnd,
  parseError,
  parseHello,
  parseListing,
  parseOk,
  parseRequest,
} from "../lib/protocol.ts";
import {
  CHUNK_SIZE,
  decodeHeader,
  decodePreamble,
  encodeControl,
  encodeHeader,
  encodePreamble,
  FrameType,
  MAX_CONTROL_PAYLOAD,
  PREAMBLE_LENGTH,
  PROTOCOL_VERSION,
} from "../lib/frames.ts";
import { FrameReader } from "../lib/frame_reader.ts";
import { hashArena } from "../lib/xxh3.ts";
import { bytesReader, concat } from "./wire.ts";

Deno.test("preamble round-trips and starts with NUL", () => {
  const bytes = encodePreamble();
  assert.equal(bytes.length, PREAMBLE_LENGTH);
  assert.equal(bytes[0], 0);
  assert.equal(decodePreamble(bytes), PROTOCOL_VERSION);
  assert.equal(decodePreamble(encodePreamble(7)), 7);
});

Deno.test("preamble rejects seed request lines and garbage", () => {
  for (const text of ["put a.tx", "list\0\0\0\0", "GET / HT"]) {
    assert.throws(() => decodePreamble(new TextEncoder().encode(text)), ProtocolError);
  }
  assert.throws(() => decodePreamble(new Uint8Array(3)), ProtocolError);
});

Deno.test("frame header round-trips and enforces per-type limits", () => {
  assert.deepEqual(decodeHeader(encodeHeader(FrameType.DATA, CHUNK_SIZE)), {
    type: FrameType.DATA,
    length: CHUNK_SIZE,
  });
  assert.throws(() => decodeHeader(encodeHeader(FrameType.DATA, CHUNK_SIZE + 1)), /out of range/);
  assert.throws(() => decodeHeader(encodeHeader(FrameType.DATA, 0)), /out of range/);
  assert.throws(
    () => decodeHeader(encodeHeader(FrameType.REQUEST, MAX_CONTROL_PAYLOAD + 1)),
    /too large/,
  );
  assert.throws(() => decodeHeader(encodeHeader(0x7f, 1)), /Unknown frame type 0x7f/);
  assert.throws(() => decodeHeader(new Uint8Array(4)), /Truncated/);
});

Deno.test("control frames carry JSON that survives a split stream", async () => {
  const request = { op: "put", name: "ü a.txt", size: 12, overwrite: true, resume: false };
  const bytes = concat([
    encodeControl(FrameType.REQUEST, request),
    encodeControl(FrameType.END, { size: 3, checksum: "xxh128:00" }),
  ]);
  const reader = new FrameReader(bytesReader(bytes, 3));
  const first = await reader.readControl();
  assert.equal(first?.type, FrameType.REQUEST);
  assert.deepEqual(parseRequest(first!.json), request);
  const second = await reader.readControl();
  assert.deepEqual(parseEnd(second!.json), { size: 3, checksum: "xxh128:00" });
  assert.equal(await reader.readControl(), null, "clean end between frames");
});

Deno.test("a stream cut inside a frame is a protocol error, never a clean end", async () => {
  const frame = encodeControl(FrameType.REQUEST, { op: "list" });
  for (const cut of [1, 4, 5, frame.length - 1]) {
    const reader = new FrameReader(bytesReader(frame.slice(0, cut), 2));
    await assert.rejects(() => reader.readControl(), ProtocolError, `cut at ${cut}`);
  }
});

Deno.test("corrupt control payloads are rejected", async () => {
  const badUtf8 = concat([encodeHeader(FrameType.REQUEST, 2), new Uint8Array([0xc3, 0x28])]);
  await assert.rejects(() => new FrameReader(bytesReader(badUtf8)).readControl(), /Malformed/);
  const notObject = concat([encodeHeader(FrameType.REQUEST, 4), new TextEncoder().encode("[1,2")]);
  await assert.rejects(() => new FrameReader(bytesReader(notObject)).readControl(), /Malformed/);
  const data = concat([encodeHeader(FrameType.DATA, 1), new Uint8Array([1])]);
  await assert.rejects(() => new FrameReader(bytesReader(data)).readControl(), /Unexpected DATA/);
});

Deno.test("requests are validated field by field", () => {
  assert.deepEqual(parseRequest({ op: "get", name: "x" }), { op: "get", name: "x" });
  assert.deepEqual(parseRequest({ op: "list", extra: 1 }), { op: "list" });
  assert.deepEqual(parseRequest({ op: "put", name: "x", size: null }), {
    op: "put",
    name: "x",
    size: null,
    overwrite: false,
    resume: false,
  });
  assert.deepEqual(parseRequest({ op: "get", name: "x", offset: 5, prefix: "xxh128:00" }), {
    op: "get",
    name: "x",
    offset: 5,
    prefix: "xxh128:00",
  });
  assert.deepEqual(parseRequest({ op: "get", name: "x", rate: 1024 }), {
    op: "get",
    name: "x",
    rate: 1024,
  });
  for (const rate of [0, -1, "8K", null, Infinity]) {
    assert.throws(() => parseRequest({ op: "get", name: "x", rate }), /Malformed/, String(rate));
  }
  assert.throws(() => parseRequest({ op: "get", name: "x", offset: 5 }), /Malformed/);
  assert.throws(() => parseRequest({ op: "put", name: "x", size: -1 }), /Malformed/);
  assert.throws(() => parseRequest({ op: "put", name: "x", size: 1.5 }), /Malformed/);
  assert.throws(() => parseRequest({ op: "get", name: 5 }), /Malformed/);
  assert.throws(() => parseRequest({ op: "delete", name: "x" }), /Unknown operation/);
  assert.throws(() => parseEnd({ size: "3", checksum: "x" }), /Malformed END/);
  assert.throws(() => parseOk({ size: -2 }), /Malformed OK/);
});

Deno.test("error messages from a peer are made safe to print", () => {
  const error = parseError({ code: "nonsense", message: "line one\n\u001b[31mred\u0007" });
  assert.equal(error.code, "io");
  assert.equal(error.message, "line one [31mred ");
  // Bidi characters and separators stay, for whoever shows the message to escape them.
  assert.equal(parseError({ code: "io", message: "a\u202eb\u2028c" }).message, "a\u202eb\u2028c");
  assert.equal(parseError({}).message, "No reason given");
  assert.equal(parseError({ code: "exists", message: "x".repeat(900) }).message.length, 500);
});

Deno.test("listings round-trip and reject malformed entries", () => {
  const entries = [{ name: "a", size: 1, mtime: 2 }, { name: "b/ü", size: 0, mtime: 0 }];
  assert.deepEqual(parseListing(encodeListing(entries)), entries);
  assert.throws(() => parseListing(new TextEncoder().encode('[{"name":1}]')), /Malformed/);
  assert.throws(() => parseListing(new TextEncoder().encode("{}")), /Malformed/);
});

Deno.test("readExact fills a buffer across many small reads, in place", async () => {
  const bytes = crypto.getRandomValues(new Uint8Array(10000));
  // Plain memory, and the checksum kernel's, which a BYOB read cannot transfer.
  for (const into of [new Uint8Array(10000), hashArena()!.subarray(64, 10064)]) {
    const reader = new FrameReader(bytesReader(bytes, 333));
    const got = await reader.readExact(into);
    assert.equal(got, into, "the caller's own view comes back");
    assert.deepEqual(into, bytes);
    assert.equal(await reader.readExact(new Uint8Array(1), true), null);
  }
});

Deno.test("HELLO: keepalive is optional, a positive number, and held to the 100 ms floor", () => {
  assert.deepEqual(parseHello({ client: "ferry/1" }), { client: "ferry/1" });
  assert.deepEqual(parseHello({ client: "ferry/1", keepalive: 2500 }), {
    client: "ferry/1",
    keepalive: 2500,
  });
  assert.equal(parseHello({ client: "ferry/1", keepalive: 1 }).keepalive, 100);
  for (const keepalive of ["1000", 0, -5, null, Number.NaN]) {
    assert.throws(
      () => parseHello({ client: "ferry/1", keepalive }),
      ProtocolError,
      `${keepalive}`,
    );
  }
  assert.throws(() => parseHello({ keepalive: 1000 }), ProtocolError, "no client");
});

Deno.test("watch reads ahead to the peer's END or ERROR, and every byte is still read in order", async () => {
  const data = new Uint8Array(3000).map((_, i) => i % 251);
  const data2 = data.subarray(0, 700);
  const error = encodeControl(FrameType.ERROR, { code: "timeout", message: "Too slow" });
  const stream = concat([
    encodeHeader(FrameType.DATA, data.length),
    data,
    encodeHeader(FrameType.DATA, data2.length),
    data2,
    error,
  ]);
  const frames = new FrameReader(bytesReader(stream, 333));
  const header = await frames.readHeader();
  assert.equal(header?.length, data.length);
  const first = await frames.readPayload(new Uint8Array(1000));
  assert.deepEqual(first, data.subarray(0, 1000));
  // Mid-frame: the watch must skip the rest of this payload and the next DATA to find the ERROR.
  const outcome = await frames.watch(1 << 20, new AbortController().signal);
  assert.ok(outcome && "error" in outcome && outcome.error instanceof RefusedError);
  assert.equal((outcome.error as RefusedError).message, "Too slow");
  assert.deepEqual(await frames.readPayload(new Uint8Array(2000)), data.subarray(1000));
  assert.equal((await frames.readHeader())?.length, data2.length);
  assert.deepEqual(await frames.readPayload(new Uint8Array(700)), data2);
  assert.equal((await frames.readControl())?.type, FrameType.ERROR);
  assert.equal(await frames.readHeader(), null);

  const end = encodeControl(FrameType.END, { size: 3, checksum: "x" });
  const complete = new FrameReader(
    bytesReader(concat([encodeHeader(FrameType.DATA, 3), data.subarray(0, 3), end]), 2),
  );
  assert.deepEqual(await complete.watch(1 << 20, new AbortController().signal), { end: true });
  assert.equal((await complete.readHeader())?.type, FrameType.DATA);

  const cut = new FrameReader(
    bytesReader(concat([encodeHeader(FrameType.DATA, 9), data.subarray(0, 5)]), 64),
  );
  await cut.readHeader();
  const closed = await cut.watch(1 << 20, new AbortController().signal);
  assert.ok(closed && "error" in closed && closed.error instanceof ProtocolError);
  assert.match(closed.error.message, /Connection closed/);
});

Deno.test("bytes a watch reads ahead count as received once, for the watchdog's rate", async () => {
  const data = new Uint8Array(5000).map((_, i) => i % 251);
  const end = encodeControl(FrameType.END, { size: data.length, checksum: "x" });
  const stream = concat([encodeHeader(FrameType.DATA, data.length), data, end]);
  const activity = { last: 0, received: 0 };
  const frames = new FrameReader(bytesReader(stream, 400), { activity });
  await frames.readHeader();
  await frames.readPayload(new Uint8Array(1000));
  assert.deepEqual(await frames.watch(1 << 20, new AbortController().signal), { end: true });
  // The whole stream has come off the socket, the watch's part included.
  assert.equal(activity.received, stream.length);
  assert.deepEqual(await frames.readPayload(new Uint8Array(4000)), data.subarray(1000));
  assert.equal((await frames.readControl())?.type, FrameType.END);
  assert.equal(activity.received, stream.length);
});

Deno.test("batched reads serve frames in place or across reads alike, however the bytes arrive", async () => {
  const frames = [];
  for (let i = 0; i < 40; i++) {
    const data = new Uint8Array(1 + i * 13).map((_, j) => (i + j) % 251);
    frames.push({ i, data });
  }
  const stream = concat(frames.flatMap(({ i, data }) => [
    encodeControl(FrameType.FILE, { index: i, size: data.length }),
    encodeHeader(FrameType.DATA, data.length),
    data,
    encodeControl(FrameType.END, { size: data.length, checksum: "x" }),
  ]));
  // Whole in one read (every frame kept in place), and in pieces that split headers and payloads.
  for (const piece of [undefined, 1, 5, 7, 64]) {
    const reader = new FrameReader(bytesReader(stream, piece));
    reader.batchReads(true);
    for (const { i, data } of frames) {
      assert.deepEqual((await reader.readControl())?.json, { index: i, size: data.length });
      assert.equal((await reader.readHeader())?.length, data.length);
      assert.deepEqual(await reader.readPayload(new Uint8Array(data.length)), data, `${piece}`);
      assert.deepEqual((await reader.readControl())?.json, { size: data.length, checksum: "x" });
    }
    assert.equal(await reader.readHeader(), null, "clean end between frames");
  }
});

Deno.test("batched reads serve the same frames in fewer reads, and a watch sees the bytes they kept", async () => {
  const data = new Uint8Array(3000).map((_, i) => i % 251);
  const error = encodeControl(FrameType.ERROR, { code: "timeout", message: "Too slow" });
  const files = [];
  for (let i = 0; i < 50; i++) {
    files.push(
      encodeControl(FrameType.FILE, { index: i, size: 3 }),
      encodeHeader(FrameType.DATA, 3),
      data.subarray(i, i + 3),
      encodeControl(FrameType.END, { size: 3, checksum: "x" }),
    );
  }
  const stream = concat([...files, encodeHeader(FrameType.DATA, data.length), data, error]);
  let reads = 0;
  const source = bytesReader(stream);
  const frames = new FrameReader({ read: (p) => (reads++, source.read(p)) });
  frames.batchReads(true);
  for (let i = 0; i < 50; i++) {
    assert.deepEqual((await frames.readControl())?.json, { index: i, size: 3 });
    assert.equal((await frames.readHeader())?.length, 3);
    assert.deepEqual(await frames.readPayload(new Uint8Array(3)), data.subarray(i, i + 3));
    assert.equal((await frames.readControl())?.type, FrameType.END);
  }
  assert.ok(reads < 10, `${reads} reads for 200 frames`);
  // Turned off with bytes kept: they are still served first, in order.
  frames.batchReads(false);
  assert.equal((await frames.readHeader())?.length, data.length);
  assert.deepEqual(await frames.readPayload(new Uint8Array(1000)), data.subarray(0, 1000));
  // Mid-frame, with the rest kept by a batched read: the watch must find the ERROR after it.
  const outcome = await frames.watch(1 << 20, new AbortController().signal);
  assert.ok(outcome && "error" in outcome && outcome.error instanceof RefusedError);
  assert.deepEqual(await frames.readPayload(new Uint8Array(2000)), data.subarray(1000));
  assert.equal((await frames.readControl())?.type, FrameType.ERROR);
  assert.equal(await frames.readHeader(), null);
});
