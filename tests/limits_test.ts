/**
 * Integration tests of the server's size and connection limits: `--max-size` refuses a
 * known-size upload before any data and cuts a streamed one, telling both sizes exactly, and
 * `--max-connections` tells a client over the limit that the server is busy.
 *
 * @module
 */

import assert from "node:assert/strict";
import { decodePreamble, encodeControl, FrameType } from "../lib/frames.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  makeTempDir,
  randomBytes,
  type RunResult,
  startServer,
  waitFor,
  writeRandomFile,
} from "./harness.ts";
import { concat, dataFrame, dataWithEnd } from "./wire.ts";
import { assertStored, openRaw, timedFerry } from "./access.ts";

const MiB = 1 << 20;

/** "Within seconds": a bound well under the client's 15 s connect timeout, not a benchmark. */
const PROMPT_MS = 10000;

// ---------------------------------------------------------------------------------- max size

Deno.test("--max-size refuses a known-size upload over the limit before any data is sent", async () => {
  await using dir = await makeTempDir();
  await writeRandomFile(`${dir.path}/big.bin`, 2 * MiB);
  await writeRandomFile(`${dir.path}/exact.bin`, MiB);
  await using server = await startServer({ args: ["--max-size", "1M"] });

  const result = await ferry(server, ["put", `${dir.path}/big.bin`]);
  assertFailure(result, /over the server's limit of 1\.00 MiB/, {
    what: "2 MiB put over a 1M limit",
  });
  await server.waitForLog(/ put "big\.bin" 0 bytes refused \(too_large/);
  await assertStored(server, [], "after the refused put");

  // On the wire: the announcement alone is refused; the server asks for no data.
  {
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(
      encodeControl(FrameType.REQUEST, { op: "put", name: "raw.bin", size: MiB + 1 }),
    );
    const error = await raw.expectFrame(FrameType.ERROR, "announced size over the limit");
    assert.equal(error.code, "too_large", JSON.stringify(error));
    // Refused before the data phase, the connection stays usable.
    await raw.write(encodeControl(FrameType.REQUEST, { op: "list" }));
    await raw.expectFrame(FrameType.OK, "list after the refusal");
  }

  assertSuccess(await ferry(server, ["put", `${dir.path}/exact.bin`]), "put of exactly 1 MiB");
  assert.deepEqual(
    await Deno.readFile(`${server.root}/exact.bin`),
    await Deno.readFile(`${dir.path}/exact.bin`),
  );
  await assertStored(server, ["exact.bin"], "after the put at the limit");
});

Deno.test("--max-size cuts off a streamed upload over the limit; one at the limit is stored", async () => {
  await using server = await startServer({ args: ["--max-size", "1M"] });
  const over = await ferry(server, ["put", "-", "over.bin"], { stdin: randomBytes(3 * MiB) });
  assertFailure(over, /over the server's limit/, { what: "3 MiB from stdin over a 1M limit" });
  const byOne = await ferry(server, ["put", "-", "by-one.bin"], { stdin: randomBytes(MiB + 1) });
  assertFailure(byOne, /over the server's limit/, { what: "1 MiB + 1 from stdin over a 1M limit" });
  await server.waitForLog(/ put "over\.bin" \d+ bytes failed \(too_large/);
  await server.waitForLog(/ put "by-one\.bin" \d+ bytes failed \(too_large/);
  await assertStored(server, [], "after the cut uploads");

  // A stream of small DATA frames is cut as soon as it passes the limit, without waiting for
  // the end: the test sends 1.25 MiB and then nothing more, and the refusal must still come.
  {
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(encodeControl(FrameType.REQUEST, { op: "put", name: "raw.bin", size: null }));
    await raw.expectFrame(FrameType.OK, "streamed put accepted");
    for (let i = 0; i < 5; i++) await raw.write(dataFrame(randomBytes(256 * 1024)));
    const error = await raw.expectFrame(FrameType.ERROR, "stream past the limit");
    assert.equal(error.code, "too_large", JSON.stringify(error));
    await raw.waitForClose(PROMPT_MS);
  }
  await server.waitForLog(/ put "raw\.bin" \d+ bytes failed \(too_large/);
  await assertStored(server, [], "after the raw stream");

  const exact = randomBytes(MiB);
  assertSuccess(await ferry(server, ["put", "-", "exact.bin"], { stdin: exact }), "1 MiB stream");
  const under = randomBytes(1000);
  assertSuccess(await ferry(server, ["put", "-", "under.bin"], { stdin: under }), "small stream");
  assert.deepEqual(await Deno.readFile(`${server.root}/exact.bin`), exact);
  assert.deepEqual(await Deno.readFile(`${server.root}/under.bin`), under);
  await assertStored(server, ["exact.bin", "under.bin"], "after the streams within the limit");
});

Deno.test("--max-size: an upload a byte over is told both sizes exactly, as rounding would show them equal", async () => {
  await using server = await startServer({ args: ["--max-size", "1M"] });
  await using dir = await makeTempDir();
  await writeRandomFile(`${dir.path}/by-one.bin`, MiB + 1);
  const result = await ferry(server, ["put", `${dir.path}/by-one.bin`]);
  const exact =
    /Upload of 1\.00 MiB \(1048577 bytes\) is over the server's limit of 1\.00 MiB \(1048576 bytes\)$/;
  assertFailure(result, exact, {
    what: "a known-size put one byte over",
  });
  {
    // Streamed, the refusal comes as the byte arrives; "1.00 MiB" would not explain it either.
    using raw = await openRaw(server);
    await raw.handshake();
    await raw.write(encodeControl(FrameType.REQUEST, { op: "put", name: "raw.bin", size: null }));
    await raw.expectFrame(FrameType.OK, "streamed put accepted");
    await raw.write(concat([dataFrame(randomBytes(MiB)), dataFrame(randomBytes(1))]));
    const error = await raw.expectFrame(FrameType.ERROR, "stream one byte past the limit");
    assert.deepEqual(error, {
      code: "too_large",
      message: "Upload is over the server's limit of 1.00 MiB (1048576 bytes)",
    });
  }
  await assertStored(server, [], "after the refusals");
});

// --------------------------------------------------------------------------- max connections

Deno.test("--max-connections 2: a third client is told the server is busy at once, and served once a slot frees", async () => {
  await using server = await startServer({ args: ["--max-connections", "2"] });
  // Both held connections are in a request (an upload accepted, its data awaited): a slot held
  // between requests could go to the newcomer instead (tests/hostile_test.ts).
  const held = new TextEncoder().encode("held");
  using first = await openRaw(server);
  await first.handshake();
  using second = await openRaw(server);
  await second.handshake();
  for (const [wire, name] of [[first, "first.txt"], [second, "second.txt"]] as const) {
    await wire.write(
      encodeControl(FrameType.REQUEST, { op: "put", name, size: held.length, overwrite: false }),
    );
    await wire.expectFrame(FrameType.OK, `put ${name} accepted`);
  }

  const { result, ms } = await timedFerry(server, ["list"]);
  assertFailure(result, /busy/i, { what: "third connection" });
  assert.ok(ms < PROMPT_MS, `the busy refusal took ${ms.toFixed(0)} ms`);
  await server.waitForLog(/refused: busy \(2 connections\)/);
  {
    // On the wire: the ferry preamble, one ERROR busy, and the server hangs up.
    using third = await openRaw(server);
    const preamble = await third.readExact(8);
    assert.ok(preamble, "a busy server still answers");
    decodePreamble(preamble);
    const error = await third.expectFrame(FrameType.ERROR, "busy refusal");
    assert.equal(error.code, "busy", JSON.stringify(error));
    await third.waitForClose(PROMPT_MS);
  }
  // The held connections still work.
  await first.write(await dataWithEnd(held));
  await first.expectFrame(FrameType.OK, "held connection still served");

  second.close();
  // The server notices the hang-up asynchronously; every attempt before it does must be a busy
  // refusal, and one must succeed within the deadline.
  let served: RunResult | undefined;
  await waitFor("a client to be served after a slot frees", async () => {
    const attempt = await ferry(server, ["put", "-", "later.txt"], { stdin: "later\n" });
    if (attempt.code !== 0) {
      assertFailure(attempt, /busy/i, { what: "attempt while the slot frees" });
    } else served = attempt;
    return attempt.code === 0;
  });
  assertSuccess(served!, "put after a slot freed");
  assert.equal(await Deno.readTextFile(`${server.root}/later.txt`), "later\n");
});
