/**
 * Integration tests at the socket level, for what the client command line cannot do: raw
 * connections speak frames built with lib/protocol.ts to the real server (cut uploads, wrong
 * checksums, hostile names, garbage), and fake servers written here feed the real client
 * downloads that are cut short or corrupt.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, encodeHeader, encodePreamble, FrameType } from "../lib/frames.ts";
import {
  assertFailure,
  assertRootHolds,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  RESUME_DIR,
  runClient,
  type RunResult,
  runServer,
  type ServerProcess,
  spawnClient,
  STAGING_DIR,
  startServer,
  stderrLines,
  waitFor,
  waitForEmptyStaging,
  writeRandomFile,
} from "./harness.ts";
import { checksumOf, concat, dataFrame, dataWithEnd, serveOnce, Wire } from "./wire.ts";

const MiB = 1 << 20;

/** Connects to the real server and completes the handshake. */
async function openSession(server: ServerProcess): Promise<Wire> {
  const wire = await Wire.connect(server);
  try {
    await wire.handshake();
  } catch (error) {
    wire.close();
    throw error;
  }
  return wire;
}

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

Deno.test("hostile names sent raw are refused with bad_name, and the connection stays usable", async () => {
  await using server = await startServer();
  await Deno.writeFile(`${server.base}/secret.txt`, new TextEncoder().encode("secret\n"));
  using wire = await openSession(server);
  const hostile = [
    "nul\u0000byte.txt",
    "\u0000",
    "../secret.txt",
    "a/../../secret.txt",
    `${server.base}/secret.txt`,
    "/etc/passwd",
    "",
    "ctrl\u0007.txt",
    `${STAGING_DIR}/x.upload`,
  ];
  for (const name of hostile) {
    for (const request of [{ op: "get", name }, { op: "put", name, size: 1, overwrite: true }]) {
      await wire.write(encodeControl(FrameType.REQUEST, request));
      const error = await wire.expectFrame(
        FrameType.ERROR,
        `${request.op} ${JSON.stringify(name)}`,
      );
      assert.equal(
        error.code,
        "bad_name",
        `${request.op} ${JSON.stringify(name)}: ${error.message}`,
      );
    }
  }
  // Refusals before any data keep the connection in step: a normal request still works on it.
  await wire.write(encodeControl(FrameType.REQUEST, { op: "list" }));
  await wire.expectFrame(FrameType.OK, "list after the refusals");

  assert.deepEqual(await listDir(server.base), ["root", "secret.txt"]);
  await assertRootHolds(server.root, []);
});

// ---------------------------------------------------------------------- garbage and strangers

Deno.test("garbage and seed-style requests are answered or closed, and the server keeps serving", async () => {
  await using server = await startServer();
  const encoder = new TextEncoder();
  const garbage = randomBytes(4096);
  garbage[0] = 0xff; // not NUL, so not a ferry preamble

  // Strangers that are not ferry at all get the seed's refusal word, then the server hangs up.
  for (
    const [what, bytes] of [
      ["seed list", encoder.encode("list")],
      ["seed put", encoder.encode("put notes.txt")],
      ["seed get", encoder.encode("get notes.txt")],
      ["random garbage", garbage],
    ] as const
  ) {
    using wire = await Wire.connect(server);
    await wire.writeQuietly(bytes);
    const reply = new TextDecoder().decode(await wire.readToEnd());
    assert.equal(reply, "cancel", `${what}: reply ${JSON.stringify(reply)}`);
  }

  // Broken ferry connections are closed, with an ERROR frame when there is something to say.
  const hello = encodeControl(FrameType.HELLO, { client: "raw-test/1" });
  const request = (json: string) => {
    const payload = encoder.encode(json);
    return concat([encodeHeader(FrameType.REQUEST, payload.length), payload]);
  };
  for (
    const [what, bytes, handshook] of [
      ["bad magic", concat([new Uint8Array([0, 1, 2, 3, 4, 5, 0, 1]), garbage]), false],
      ["truncated preamble", new Uint8Array([0, 0x46, 0x45]), false],
      ["no HELLO", concat([encodePreamble(), request('{"op":"list"}')]), false],
      ["unknown frame type", concat([encodePreamble(), hello, encodeHeader(0x7f, 0)]), true],
      ["huge control frame", concat([encodePreamble(), hello, encodeHeader(3, 0x7fffffff)]), true],
      ["DATA instead of REQUEST", concat([encodePreamble(), hello, dataFrame(garbage)]), true],
      ["JSON that is not an object", concat([encodePreamble(), hello, request("[1,2]")]), true],
      ["invalid JSON", concat([encodePreamble(), hello, request("{op:")]), true],
      ["unknown op", concat([encodePreamble(), hello, request('{"op":"erase","name":"x"}')]), true],
      ["put without a name", concat([encodePreamble(), hello, request('{"op":"put"}')]), true],
      [
        "zero-length DATA",
        concat([encodePreamble(), hello, encodeHeader(FrameType.DATA, 0)]),
        true,
      ],
    ] as const
  ) {
    using wire = await Wire.connect(server);
    await wire.writeQuietly(bytes);
    if (what === "truncated preamble") {
      // The server cannot know the preamble is over; hanging up our side ends it.
      wire.close();
      continue;
    }
    let reply = await wire.readToEnd();
    if (handshook) {
      assert.deepEqual(reply.subarray(0, 8), encodePreamble(), `${what}: preamble`);
      reply = reply.subarray(8);
      const welcomeLength = new DataView(reply.buffer, reply.byteOffset).getUint32(1);
      assert.equal(reply[0], FrameType.WELCOME, `${what}: WELCOME`);
      reply = reply.subarray(5 + welcomeLength);
    }
    // What remains must be one ERROR frame saying the request was bad. Only where bytes we
    // sent are left unread may the server's close turn into a reset that loses its answer.
    const mayBeLost = what === "bad magic" || what === "DATA instead of REQUEST";
    if (reply.length > 0 || !mayBeLost) {
      assert.equal(reply[0], FrameType.ERROR, `${what}: unexpected reply ${reply}`);
      const length = new DataView(reply.buffer, reply.byteOffset).getUint32(1);
      assert.equal(reply.length, 5 + length, `${what}: exactly one frame, then the end`);
      const json = JSON.parse(new TextDecoder().decode(reply.subarray(5)));
      assert.equal(json.code, "bad_request", `${what}: ${JSON.stringify(json)}`);
    }
  }
  // A connection that says nothing at all and leaves.
  (await Wire.connect(server)).close();

  // The server is still alive and well for a real client.
  const data = randomBytes(200000);
  assertSuccess(
    await ferry(server, ["put", "-", "after.bin"], { stdin: data }),
    "put after the garbage",
  );
  const got = await ferry(server, ["get", "after.bin", "-"]);
  assertSuccess(got, "get after the garbage");
  assert.deepEqual(got.stdout, data);
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list after the garbage");
  assert.equal(new TextDecoder().decode(listed.stdout), "after.bin\n");
  await assertRootHolds(server.root, ["after.bin"]);
});

Deno.test("stale staging files are removed at start and the server exits 0 on SIGTERM", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await Deno.mkdir(`${root}/${STAGING_DIR}`, { recursive: true });
  await Deno.writeFile(`${root}/${STAGING_DIR}/stale.upload`, randomBytes(1000));
  await Deno.writeFile(`${root}/kept.txt`, new TextEncoder().encode("kept\n"));

  await using server = await startServer({ root });
  assert.deepEqual(await listDir(`${root}/${STAGING_DIR}`), [], "stale upload cleaned at start");
  const listed = await ferry(server, ["list"]);
  assertSuccess(listed, "list");
  assert.equal(new TextDecoder().decode(listed.stdout), "kept.txt\n");
  assert.equal(await server.stop(), 0, "SIGTERM is a clean stop");
  await assertRootHolds(root, ["kept.txt"]);
  assert.equal(await Deno.readTextFile(`${root}/kept.txt`), "kept\n", "the root is left alone");
});

// ------------------------------------------------------------ names, sizes and what is said

/** A put REQUEST frame. */
function putRequest(name: string, size: number | null, extra: Record<string, unknown> = {}) {
  return encodeControl(FrameType.REQUEST, { op: "put", name, size, overwrite: false, ...extra });
}

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

Deno.test("names with C1 or bidi control characters are refused raw, and the log shows them escaped", async () => {
  await using server = await startServer();
  using wire = await openSession(server);
  const names = ["\u009b31mred.txt", "evil\u202etxt.exe", "a\u2067b", "dir/\u0085x"];
  for (const name of names) {
    for (const request of [{ op: "get", name }, { op: "put", name, size: 1, overwrite: false }]) {
      await wire.write(encodeControl(FrameType.REQUEST, request));
      const error = await wire.expectFrame(FrameType.ERROR, `${request.op} ${quoted(name)}`);
      assert.equal(error.code, "bad_name", `${request.op} ${quoted(name)}: ${error.message}`);
      assert.match(String(error.message), /control character/);
    }
  }
  await wire.write(encodeControl(FrameType.REQUEST, { op: "list" }));
  await wire.expectFrame(FrameType.OK, "list after the refusals");
  await server.waitForLog(/ put "dir\/\\u0085x" 0 bytes refused \(bad_name/);
  await server.waitForLog(/ get "\\u009b31mred\.txt" 0 bytes refused \(bad_name/);
  await server.waitForLog(/ get "evil\\u202etxt\.exe" 0 bytes refused \(bad_name/);
  for (const line of server.lines) {
    assert.doesNotMatch(
      line,
      /[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/,
      `raw in the log: ${line}`,
    );
  }
  await assertRootHolds(server.root, []);
});

/** A name as the tests print it, control characters escaped. */
function quoted(name: string): string {
  return JSON.stringify(name).replace(/[\u0080-\u009f\u202a-\u202e\u2066-\u2069]/g, "?");
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

Deno.test("a symlink loop is refused as bad_name, and an OS error reaches the client without a server path", async () => {
  await using server = await startServer();
  await Deno.symlink("loop", `${server.root}/loop`);
  {
    using wire = await openSession(server);
    for (
      const request of [
        { op: "get", name: "loop" },
        { op: "get", name: "loop/inner.txt" },
        { op: "put", name: "loop/new.txt", size: 1, overwrite: false },
      ]
    ) {
      await wire.write(encodeControl(FrameType.REQUEST, request));
      const error = await wire.expectFrame(FrameType.ERROR, `${request.op} ${request.name}`);
      assert.deepEqual(error, {
        code: "bad_name",
        message: `Refused name "${request.name}": it is a symlink loop`,
      });
    }
  }
  const got = await ferry(server, ["get", "loop", "-"]);
  assertFailure(got, /^ferry: .*Refused name "loop": it is a symlink loop$/, {
    what: "get of the loop",
  });

  // Someone removes the staging folder under the running server: the next upload fails with
  // a real OS error. The client hears which error, and nothing of where the files live.
  await Deno.remove(`${server.root}/${STAGING_DIR}`, { recursive: true });
  using wire = await openSession(server);
  await wire.write(putRequest("after.txt", 1));
  const error = await wire.expectFrame(FrameType.ERROR, "put without a staging folder");
  assert.deepEqual(error, {
    code: "io",
    message: "Server error: No such file or directory (os error 2)",
  });
  for (const line of server.lines.filter((line) => / (get|put) /.test(line))) {
    assert.ok(!line.includes(server.base), `a server path in the log: ${line}`);
  }
  await Deno.mkdir(`${server.root}/${STAGING_DIR}`);
});

Deno.test("a download whose client goes away is logged as such; a resumed one logs the bytes it sent", async () => {
  await using server = await startServer();
  // Far more than the kernel buffers: the server is still sending when the client leaves.
  await writeRandomFile(`${server.root}/big.bin`, 64 * MiB);
  {
    using wire = await openSession(server);
    await wire.write(encodeControl(FrameType.REQUEST, { op: "get", name: "big.bin" }));
    await wire.expectFrame(FrameType.OK, "get accepted");
    await wire.readFrame(); // some data, then hang up with the rest unread
  }
  const line = await server.waitForLog(/ get "big\.bin" \d+ bytes (?!ok )/);
  assert.match(
    line,
    / get "big\.bin" \d+ bytes interrupted \(client went away: (connection reset|broken pipe)\) /,
  );

  const data = randomBytes(3 * MiB);
  await Deno.writeFile(`${server.root}/three.bin`, data);
  using wire = await openSession(server);
  await wire.write(encodeControl(FrameType.REQUEST, {
    op: "get",
    name: "three.bin",
    offset: MiB,
    prefix: await checksumOf(data.subarray(0, MiB)),
  }));
  const ok = await wire.expectFrame(FrameType.OK, "resumed get accepted");
  assert.equal(ok.offset, MiB, JSON.stringify(ok));
  let received = 0;
  for (let frame = await wire.readFrame(); frame?.type === FrameType.DATA;) {
    received += frame.payload.length;
    frame = await wire.readFrame();
  }
  assert.equal(received, 2 * MiB, "only the missing part was sent");
  await server.waitForLog(
    new RegExp(` get "three\\.bin" ${2 * MiB} bytes ok xxh128:\\w+ \\(resumed from ${MiB}\\)`),
  );
});

Deno.test("list leaves out a folder the server may not read, and lists the rest", async () => {
  await using base = await makeTempDir();
  const root = `${base.path}/root`;
  await Deno.mkdir(`${root}/secret`, { recursive: true });
  await Deno.mkdir(`${root}/open`);
  await Deno.writeTextFile(`${root}/secret/hidden.txt`, "hidden\n");
  await Deno.writeTextFile(`${root}/open/b.txt`, "b\n");
  await Deno.writeTextFile(`${root}/a.txt`, "a\n");
  // Denied to the server process even though the tests run as root (chmod would not stop it).
  await using server = await startServer({ root, permissions: [`--deny-read=${root}/secret`] });

  const listed = await ferry(server, ["list", "-r"]);
  assertSuccess(listed, "list with an unreadable folder");
  assert.equal(new TextDecoder().decode(listed.stdout), "a.txt\nopen/\nopen/b.txt\n");
  const denied = await ferry(server, ["get", "secret/hidden.txt", "-"]);
  assertFailure(denied, /no permission/i, { what: "get from the unreadable folder" });
  await server.waitForLog(/ list - \d+ bytes ok /);
});

Deno.test("a --root that is a regular file is refused in one line that says so", async () => {
  await using base = await makeTempDir();
  const file = `${base.path}/file.txt`;
  await Deno.writeTextFile(file, "not a folder\n");
  const cases: [string, string][] = [
    [file, `ferry-server: Root ${file} is not a folder`],
    [`${file}/sub`, `ferry-server: Root ${file}/sub cannot be made: a file is in its path`],
  ];
  for (const [root, line] of cases) {
    const result = await runServer(["0", "--root", root]);
    assert.equal(result.code, 1, `--root ${root}: exit ${result.code}\n${result.stderr}`);
    assert.deepEqual(stderrLines(result), [line]);
  }
  assert.equal(await Deno.readTextFile(file), "not a folder\n", "the file is left alone");
});

// -------------------------------------------------------------- downloads from a fake server

/** What a fake server does after the handshake and the client's REQUEST. */
type FakeScript = (wire: Wire, request: Record<string, unknown>) => Promise<void>;

/**
 * Runs the real client against a one-connection fake server on 127.0.0.1 and returns what the
 * client did. Failed assertions inside the fake server fail the test too.
 */
function withFakeServer(
  script: FakeScript,
  run: (port: number) => Promise<RunResult>,
): Promise<RunResult> {
  return serveOnce(async (conn) => {
    using wire = new Wire(conn);
    await wire.acceptHandshake();
    const request = await wire.expectFrame(FrameType.REQUEST, "fake server request");
    await script(wire, request);
  }, run);
}

/** Starts a download as a server would: OK with the size, then optionally some DATA frames. */
async function beginDownload(wire: Wire, request: Record<string, unknown>, size: number) {
  assert.equal(request.op, "get");
  assert.equal(request.name, "remote.bin");
  await wire.write(encodeControl(FrameType.OK, { size, mtime: Date.now() }));
}

Deno.test("a fake server that sends a file correctly is accepted (control for the cases below)", async () => {
  await using work = await makeTempDir();
  const data = randomBytes(MiB + 777);
  const checksum = await checksumOf(data);
  const result = await withFakeServer(async (wire, request) => {
    await beginDownload(wire, request, data.length);
    // Two DATA frames, as a frame boundary must mean nothing to the data.
    await wire.write(dataFrame(data.subarray(0, 1000)));
    await wire.write(dataFrame(data.subarray(1000)));
    await wire.write(encodeControl(FrameType.END, { size: data.length, checksum }));
    assert.equal(await wire.readFrame(), null, "the client hangs up when done");
  }, (port) =>
    runClient(["127.0.0.1", String(port), "get", "remote.bin", "out.bin"], {
      cwd: work.path,
    }));
  assertSuccess(result, "get from the fake server");
  assert.deepEqual(await listDir(work.path), ["out.bin"]);
  assert.deepEqual(await Deno.readFile(`${work.path}/out.bin`), data);
});

Deno.test("a download cut mid-way exits 1 and leaves no LOCAL file; any kept LOCAL.part is a true prefix", async () => {
  await using work = await makeTempDir();
  const data = randomBytes(MiB);
  const part = `${work.path}/out.bin.part`;
  // What each fake server sends after OK, and how many bytes of it are whole DATA frames.
  for (
    const [what, send, whole] of [
      ["cut between frames", dataFrame(data.subarray(0, 256 * 1024)), 256 * 1024],
      ["cut inside a frame", concat([encodeHeader(FrameType.DATA, MiB), data.subarray(0, 1e5)]), 0],
      ["cut before any data", new Uint8Array(0), 0],
      ["cut inside the END frame", concat([dataFrame(data), encodeHeader(FrameType.END, 80)]), MiB],
    ] as const
  ) {
    const result = await withFakeServer(async (wire, request) => {
      await beginDownload(wire, request, data.length);
      await wire.write(send);
      // Hang up only once the client has started writing its .part file, so the test sees
      // what the client does with it rather than a file never made.
      await waitFor("the client to create out.bin.part", () => pathExists(part));
    }, (port) =>
      runClient(["127.0.0.1", String(port), "get", "remote.bin", "out.bin"], {
        cwd: work.path,
      }));
    assert.equal(result.code, 1, `${what}: exit ${result.code}\n${result.stderr}`);
    assert.doesNotMatch(result.stderr, /^\s+at |error: Uncaught/m, `${what}:\n${result.stderr}`);
    assert.equal(await pathExists(`${work.path}/out.bin`), false, `${what}: no out.bin`);
    // The core promise (issue 2) is no .part either. Issue 6 lets an interrupted get keep its
    // .part for `get --resume`; that is accepted only if it holds nothing but the bytes that
    // really arrived in whole frames, and the user is told about it (after the reason, on the
    // same line).
    const lines = stderrLines(result);
    assert.equal(lines.length, 1, `${what}: one error line, got:\n${result.stderr}`);
    assert.match(lines[0], /^ferry: \S/, what);
    const note = /; partial download kept in \S*out\.bin\.part \(run again with --resume/;
    if (await pathExists(part)) {
      const kept = await Deno.readFile(part);
      assert.ok(kept.length > 0 && kept.length <= whole, `${what}: .part of ${kept.length} bytes`);
      assert.deepEqual(kept, data.subarray(0, kept.length), `${what}: .part is a true prefix`);
      assert.match(lines[0], note, `${what}: the kept .part is mentioned`);
      await Deno.remove(part);
    } else {
      assert.doesNotMatch(lines[0], /--resume/, `${what}: no .part kept, yet mentioned`);
    }
    assert.deepEqual(await listDir(work.path), [], `${what}: nothing else left`);
  }
});

Deno.test("a download with a wrong END checksum or size exits 1 and leaves no file", async () => {
  await using work = await makeTempDir();
  const data = randomBytes(300000);
  const checksum = await checksumOf(data);
  for (
    const [what, end, pattern] of [
      ["wrong checksum", { size: data.length, checksum: "xxh128:" + "f".repeat(32) }, /checksum/i],
      ["checksum of other data", {
        size: data.length,
        checksum: await checksumOf(data.subarray(1)),
      }, /checksum/i],
      ["END size too big", { size: data.length + 1, checksum }, /size|bytes/i],
      ["END size too small", { size: data.length - 1, checksum }, /size|bytes/i],
      ["END size not a number", { size: "300000", checksum }, /END|malformed/i],
    ] as const
  ) {
    for (const local of ["out.bin", "-"]) {
      const result = await withFakeServer(async (wire, request) => {
        await beginDownload(wire, request, data.length);
        await wire.write(concat([dataFrame(data), encodeControl(FrameType.END, end)]));
        // The client decides, then hangs up; it must not wait for anything more.
        await wire.readToEnd();
      }, (port) =>
        runClient(["127.0.0.1", String(port), "get", "remote.bin", local], {
          cwd: work.path,
        }));
      assert.equal(result.code, 1, `${what} to ${local}: exit ${result.code}\n${result.stderr}`);
      assert.doesNotMatch(result.stderr, /^\s+at |error: Uncaught/m, result.stderr);
      assert.equal(stderrLines(result).length, 1, `${what} to ${local}:\n${result.stderr}`);
      assert.match(result.stderr, pattern, `${what} to ${local}`);
      // Bytes already sent to a pipe cannot be taken back, but a file must never appear.
      assert.deepEqual(await listDir(work.path), [], `${what} to ${local}: no file left`);
    }
  }
});

Deno.test("a server refusal mid-download (ABORT) exits 1 with its reason and leaves no file", async () => {
  await using work = await makeTempDir();
  const result = await withFakeServer(async (wire, request) => {
    await beginDownload(wire, request, 2000);
    await wire.write(dataFrame(randomBytes(1000)));
    await wire.write(
      encodeControl(FrameType.ABORT, { code: "io", message: "Disk\u001b[31m fell off" }),
    );
    await wire.readToEnd();
  }, (port) =>
    runClient(["127.0.0.1", String(port), "get", "remote.bin", "out.bin"], {
      cwd: work.path,
    }));
  assertFailure(result, /Disk fell off|Disk\s+\[31m fell off/, { what: "ABORT mid-download" });
  assert.ok(!result.stderr.includes("\u001b"), "control characters from the peer are stripped");
  assert.deepEqual(await listDir(work.path), []);
});

Deno.test("two clients downloading the same file at once both get it intact", async () => {
  // Two clients read the same file at once: downloads share nothing but the file.
  await using server = await startServer();
  await using work = await makeTempDir();
  await writeRandomFile(`${server.root}/shared.bin`, 6 * MiB);
  const [a, b] = await Promise.all(
    ["a.bin", "b.bin"].map((local) =>
      runClient([server.host, String(server.port), "get", "shared.bin", local], { cwd: work.path })
    ),
  );
  assertSuccess(a, "first download");
  assertSuccess(b, "second download");
  assert.ok(await filesEqual(`${server.root}/shared.bin`, `${work.path}/a.bin`));
  assert.ok(await filesEqual(`${server.root}/shared.bin`, `${work.path}/b.bin`));
});
