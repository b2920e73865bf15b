/**
 * Uploads over raw connections to the real server, for what the client command line cannot do:
 * cut connections and killed clients leave nothing, checksums and announced sizes are enforced,
 * a name being uploaded is refused to a second uploader, and an interrupted upload is kept for a
 * resume only if its size was announced.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, encodeHeader, FrameType } from "../lib/frames.ts";
import {
  assertRootHolds,
  assertSuccess,
  ferry,
  listDir,
  pathExists,
  randomBytes,
  RESUME_DIR,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  waitFor,
  waitForEmptyStaging,
} from "./harness.ts";
import { checksumOf, concat, dataFrame, dataWithEnd, type Wire } from "./wire.ts";
import { openSession, putRequest } from "./raw_session.ts";

const MiB = 1 << 20;

// ------------------------------------------------------------------------- uploads that fail

Deno.test("a connection cut mid-upload leaves nothing, spares other clients, and a retry succeeds", async () => {
  await using server = await startServer();
  const data = randomBytes(4 * MiB);
  {
    using wire = await openSession(server);
    await wire.write(encodeControl(FrameType.REQUEST, {
      op: "put",
      name: "cut.bin",
      size: data.length,
      overwrite: false,
    }));
    await wire.expectFrame(FrameType.OK, "put accepted");
    // One whole DATA frame, then a frame that stops a third of the way through.
    await wire.write(dataFrame(data.subarray(0, MiB)));
    await wire.write(encodeHeader(FrameType.DATA, MiB));
    await wire.write(data.subarray(MiB, MiB + 300000));
    // Proof that the upload is really in progress: the server writes each DATA frame to its
    // staging file as it arrives, so the first MiB shows up there while the second is pending.
    const staging = `${server.root}/${STAGING_DIR}`;
    await waitFor("the first MiB to reach the staging file", async () => {
      const files = await listDir(staging);
      return files.length === 1 && (await Deno.stat(`${staging}/${files[0]}`)).size >= MiB;
    });
    assert.equal(await pathExists(`${server.root}/cut.bin`), false, "not visible mid-upload");

    // The stalled upload holds up nobody, and its staging file is not listed.
    const other = await ferry(server, ["put", "-", "other.bin"], {
      stdin: new Uint8Array([1, 2, 3]),
    });
    assertSuccess(other, "put while another upload is stalled");
    const listed = await ferry(server, ["list"]);
    assertSuccess(listed, "list while an upload is stalled");
    assert.equal(new TextDecoder().decode(listed.stdout), "other.bin\n");
  } // The connection closes here, without END.

  await server.waitForLog(/ put "cut\.bin" \d+ bytes (?!ok )/);
  await waitForEmptyStaging(server.root);
  // Nothing under the name and nothing visible. A server may keep the bytes that did arrive in
  // a private folder for a later resume (allowKept); the fresh retry below must clear them.
  await assertRootHolds(server.root, ["other.bin"], { allowKept: true });
  const after = await ferry(server, ["list"]);
  assertSuccess(after, "list after the cut");
  assert.equal(new TextDecoder().decode(after.stdout), "other.bin\n");

  const retry = await ferry(server, ["put", "-", "cut.bin"], { stdin: data });
  assertSuccess(retry, "retry of the cut upload");
  assert.deepEqual(await Deno.readFile(`${server.root}/cut.bin`), data);
  await assertRootHolds(server.root, ["cut.bin", "other.bin"]);
});

Deno.test("a client process killed mid-upload leaves nothing, and a retry succeeds", async () => {
  await using server = await startServer();
  const data = randomBytes(MiB);
  const child = spawnClient([server.host, String(server.port), "put", "-", "killed.bin"]);
  const writer = child.stdin.getWriter();
  let fed = false;
  // The write settles once the client has read the whole MiB from its stdin pipe.
  const feeding = writer.write(data).then(() => fed = true, () => {});
  try {
    const staging = `${server.root}/${STAGING_DIR}`;
    await waitFor("the server to accept the upload", async () => {
      return (await listDir(staging)).length === 1;
    });
    await waitFor("the client to read its stdin", () => fed);
  } finally {
    child.kill("SIGKILL");
    await feeding;
    await writer.close().catch(() => {});
  }
  const output = await child.output();
  assert.equal(output.signal, "SIGKILL", "the client was still running when killed");
  assert.equal(await pathExists(`${server.root}/killed.bin`), false);

  await server.waitForLog(/ put "killed\.bin" \d+ bytes (?!ok )/);
  await waitForEmptyStaging(server.root);
  // As above: nothing under the name; kept bytes for a resume are tolerated until the retry.
  await assertRootHolds(server.root, [], { allowKept: true });

  const retry = await ferry(server, ["put", "-", "killed.bin"], { stdin: data });
  assertSuccess(retry, "retry after the killed client");
  assert.deepEqual(await Deno.readFile(`${server.root}/killed.bin`), data);
  await assertRootHolds(server.root, ["killed.bin"]);
});

Deno.test("an upload whose END does not match the data is refused with code checksum", async () => {
  await using server = await startServer();
  const data = randomBytes(100000);
  const checksum = await checksumOf(data);
  const cases: [string, object][] = [
    ["wrong-sum.bin", { size: data.length, checksum: "xxh128:" + "0".repeat(32) }],
    ["wrong-size.bin", { size: data.length + 1, checksum }],
    ["short-size.bin", { size: data.length - 1, checksum }],
  ];
  for (const [name, end] of cases) {
    using wire = await openSession(server);
    await wire.write(encodeControl(FrameType.REQUEST, {
      op: "put",
      name,
      size: data.length,
      overwrite: false,
    }));
    await wire.expectFrame(FrameType.OK, `${name} accepted`);
    await wire.write(concat([dataFrame(data), encodeControl(FrameType.END, end)]));
    const error = await wire.expectFrame(FrameType.ERROR, `${name} refused`);
    assert.equal(error.code, "checksum", `${name}: ${JSON.stringify(error)}`);
    assert.equal(typeof error.message, "string");
    // After a failed data phase the server hangs up.
    assert.equal(await wire.readFrame(), null, `${name}: connection closed after the ERROR`);
    await server.waitForLog(new RegExp(` put "${name.replace(".", "\\.")}" .*failed \\(checksum`));
  }
  await waitForEmptyStaging(server.root);
  await assertRootHolds(server.root, []);

  // The control case: the same frames with the right END are stored, which shows the refusals
  // above came from the END check and nothing else.
  using wire = await openSession(server);
  await wire.write(encodeControl(FrameType.REQUEST, {
    op: "put",
    name: "right.bin",
    size: data.length,
    overwrite: false,
  }));
  await wire.expectFrame(FrameType.OK, "right.bin accepted");
  await wire.write(await dataWithEnd(data));
  const ok = await wire.expectFrame(FrameType.OK, "right.bin stored");
  assert.equal(ok.size, data.length);
  assert.equal(ok.checksum, checksum);
  assert.deepEqual(await Deno.readFile(`${server.root}/right.bin`), data);
  await assertRootHolds(server.root, ["right.bin"]);
});

Deno.test("a put refused after its data (the name taken meanwhile) leaves the connection in step", async () => {
  await using server = await startServer();
  const data = randomBytes(50000);
  const old = randomBytes(100);
  const folderData = randomBytes(200);
  using wire = await openSession(server);
  // The name is free when the put is accepted, and taken before END: the refusal takes the
  // place of the final OK, so the same connection carries the next request.
  await wire.write(putRequest("taken.bin", data.length));
  await wire.expectFrame(FrameType.OK, "taken.bin accepted");
  await Deno.writeFile(`${server.root}/taken.bin`, old);
  await wire.write(await dataWithEnd(data));
  const error = await wire.expectFrame(FrameType.ERROR, "taken.bin refused at commit");
  assert.equal(error.code, "exists", JSON.stringify(error));
  // A folder that appears at the name meanwhile is refused the same way.
  await wire.write(putRequest("dir", folderData.length));
  await wire.expectFrame(FrameType.OK, "dir accepted");
  await Deno.mkdir(`${server.root}/dir`);
  await wire.write(await dataWithEnd(folderData));
  const folder = await wire.expectFrame(FrameType.ERROR, "dir refused at commit");
  assert.equal(folder.code, "not_a_file", JSON.stringify(folder));
  // The next put on the same connection is stored.
  await wire.write(putRequest("next.bin", data.length));
  await wire.expectFrame(FrameType.OK, "next.bin accepted");
  await wire.write(await dataWithEnd(data));
  const ok = await wire.expectFrame(FrameType.OK, "next.bin stored");
  assert.equal(ok.checksum, await checksumOf(data));
  assert.deepEqual(await Deno.readFile(`${server.root}/taken.bin`), old, "not overwritten");
  assert.deepEqual(await Deno.readFile(`${server.root}/next.bin`), data);
  await server.waitForLog(/ put "taken\.bin" 50000 bytes refused \(exists: /);
  await waitForEmptyStaging(server.root);
  await assertRootHolds(server.root, ["dir", "next.bin", "taken.bin"]);
});

Deno.test("a name being uploaded is refused to a second uploader until the first commits", async () => {
  await using server = await startServer();
  const data = randomBytes(5000);
  using first = await openSession(server);
  await first.write(encodeControl(FrameType.REQUEST, {
    op: "put",
    name: "same.bin",
    size: data.length,
    overwrite: false,
  }));
  await first.expectFrame(FrameType.OK, "first upload accepted");

  for (const overwrite of [false, true]) {
    using second = await openSession(server);
    await second.write(encodeControl(FrameType.REQUEST, {
      op: "put",
      name: "same.bin",
      size: 1,
      overwrite,
    }));
    const error = await second.expectFrame(
      FrameType.ERROR,
      `second upload (overwrite ${overwrite})`,
    );
    // Not `exists`: overwriting would not help, so a client must not suggest it.
    assert.equal(error.code, "in_progress", JSON.stringify(error));
    assert.match(String(error.message), /already in progress/);
  }

  await first.write(await dataWithEnd(data));
  await first.expectFrame(FrameType.OK, "first upload committed");
  assert.deepEqual(await Deno.readFile(`${server.root}/same.bin`), data);
  await assertRootHolds(server.root, ["same.bin"]);
});

/** Waits until the one staging file holds at least `size` bytes: the upload is under way. */
async function waitForStaged(server: ServerProcess, size: number): Promise<void> {
  const staging = `${server.root}/${STAGING_DIR}`;
  await waitFor(`${size} bytes in the staging file`, async () => {
    const files = await listDir(staging);
    if (files.length !== 1) return false;
    const info = await Deno.stat(`${staging}/${files[0]}`).catch(() => null);
    return info !== null && info.size >= size;
  });
}

Deno.test("a put that sends more than it announced is refused at once, one that ends short at END, and nothing is stored", async () => {
  await using server = await startServer();
  const data = randomBytes(6);
  {
    // QA's case: 3 announced, 6 sent with an END that is right about the 6.
    using wire = await openSession(server);
    await wire.write(putRequest("lie.txt", 3));
    await wire.expectFrame(FrameType.OK, "put accepted");
    await wire.write(await dataWithEnd(data));
    const error = await wire.expectFrame(FrameType.ERROR, "more than announced");
    assert.deepEqual(error, {
      code: "bad_request",
      message: "Upload sent more than the 3 bytes it announced",
    });
    assert.equal(await wire.readFrame(), null, "closed after the ERROR");
  }
  {
    // No END needed: the excess is refused the moment it arrives.
    using wire = await openSession(server);
    await wire.write(putRequest("early.bin", MiB));
    await wire.expectFrame(FrameType.OK, "put accepted");
    await wire.write(dataFrame(randomBytes(MiB)));
    await wire.write(dataFrame(randomBytes(1)));
    const error = await wire.expectFrame(FrameType.ERROR, "one byte past the announcement");
    assert.equal(error.code, "bad_request", JSON.stringify(error));
    assert.match(String(error.message), /more than the 1048576 bytes it announced/);
  }
  {
    using wire = await openSession(server);
    await wire.write(putRequest("short.txt", 3));
    await wire.expectFrame(FrameType.OK, "put accepted");
    await wire.write(await dataWithEnd(data.subarray(0, 2)));
    const error = await wire.expectFrame(FrameType.ERROR, "less than announced");
    assert.deepEqual(error, {
      code: "bad_request",
      message: "Upload ended after 2 bytes but announced 3",
    });
  }
  await server.waitForLog(/ put "lie\.txt" \d+ bytes failed \(bad_request: Upload sent more/);
  await server.waitForLog(/ put "early\.bin" \d+ bytes failed \(bad_request: Upload sent more/);
  await server.waitForLog(/ put "short\.txt" 2 bytes failed \(bad_request: Upload ended after/);
  await waitForEmptyStaging(server.root);
  await assertRootHolds(server.root, []);

  // The control: the same frames with an honest announcement are stored.
  using wire = await openSession(server);
  await wire.write(putRequest("honest.txt", 6));
  await wire.expectFrame(FrameType.OK, "put accepted");
  await wire.write(await dataWithEnd(data));
  await wire.expectFrame(FrameType.OK, "honest upload stored");
  assert.deepEqual(await Deno.readFile(`${server.root}/honest.txt`), data);
});

Deno.test("a resumed put announces the whole file's size: the rest is accepted, one byte more is not", async () => {
  await using server = await startServer();
  const data = randomBytes(3 * MiB);
  const kept = / put "resumed\.bin" 2097152 bytes interrupted, kept for resume/;
  const interrupt = async (times: number) => {
    {
      // The client goes away after 2 MiB of 3: the server keeps them for a resume.
      using wire = await openSession(server);
      await wire.write(putRequest("resumed.bin", data.length));
      await wire.expectFrame(FrameType.OK, "first put accepted");
      await wire.write(dataFrame(data.subarray(0, 2 * MiB)));
      await waitForStaged(server, 2 * MiB);
    }
    await waitFor(`the server to keep the upload (${times})`, () => {
      return server.lines.filter((line) => kept.test(line)).length === times;
    });
  };
  const resume = async (wire: Wire) => {
    await wire.write(putRequest("resumed.bin", data.length, { resume: true }));
    const ok = await wire.expectFrame(FrameType.OK, "resumed put accepted");
    assert.equal(ok.offset, 2 * MiB, JSON.stringify(ok));
    assert.equal(ok.prefix, await checksumOf(data.subarray(0, 2 * MiB)));
  };

  await interrupt(1);
  {
    using wire = await openSession(server);
    await resume(wire);
    await wire.write(dataFrame(concat([data.subarray(2 * MiB), new Uint8Array(1)])));
    const error = await wire.expectFrame(FrameType.ERROR, "resumed put one byte over");
    assert.equal(error.code, "bad_request", JSON.stringify(error));
    assert.match(String(error.message), /more than the 3145728 bytes it announced/);
  }
  await waitForEmptyStaging(server.root);
  assert.equal(await pathExists(`${server.root}/resumed.bin`), false, "nothing stored");

  await interrupt(2);
  using wire = await openSession(server);
  await resume(wire);
  await wire.write(
    concat([
      dataFrame(data.subarray(2 * MiB)),
      encodeControl(FrameType.END, { size: data.length, checksum: await checksumOf(data) }),
    ]),
  );
  const ok = await wire.expectFrame(FrameType.OK, "resumed put stored");
  assert.equal(ok.size, data.length);
  assert.deepEqual(await Deno.readFile(`${server.root}/resumed.bin`), data);
  await assertRootHolds(server.root, ["resumed.bin"]);
});

Deno.test("an upload whose client goes away is kept for a resume only if its size was announced", async () => {
  await using server = await startServer();
  const resumeDir = `${server.root}/${RESUME_DIR}`;
  const leave = async (name: string, size: number | null) => {
    using wire = await openSession(server);
    await wire.write(putRequest(name, size));
    await wire.expectFrame(FrameType.OK, `${name} accepted`);
    await wire.write(dataFrame(randomBytes(2 * MiB)));
    await waitForStaged(server, 2 * MiB);
  }; // The connection closes here, mid-upload.

  // A stream (stdin) cannot be resumed by anyone: nothing of it is kept.
  await leave("stream.bin", null);
  await server.waitForLog(
    / put "stream\.bin" 2097152 bytes interrupted, discarded \(client went away: connection closed\)/,
  );
  await waitForEmptyStaging(server.root);
  assert.deepEqual(await listDir(resumeDir), [], "nothing kept of the stream");

  // The control: the same with its size announced is kept.
  await leave("sized.bin", 8 * MiB);
  await server.waitForLog(
    / put "sized\.bin" 2097152 bytes interrupted, kept for resume \(client went away: connection closed\)/,
  );
  await waitForEmptyStaging(server.root);
  const kept = await listDir(resumeDir);
  assert.equal(kept.length, 2, `a .part and its description: ${kept}`);
  const part = kept.find((name) => name.endsWith(".part"))!;
  assert.equal((await Deno.stat(`${resumeDir}/${part}`)).size, 2 * MiB);
});
