/**
 * Hostile requests over raw connections to the real server: names sent raw (traversal, C1 and
 * bidi controls, symlink loops) are refused and logged escaped, garbage and seed-style requests
 * are answered or closed, and the server keeps serving.
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
  listDir,
  randomBytes,
  STAGING_DIR,
  startServer,
} from "./harness.ts";
import { concat, dataFrame, Wire } from "./wire.ts";
import { openSession, putRequest } from "./raw_session.ts";

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
