/**
 * Integration tests of what the server sends: downloads whose client goes away are logged as
 * such, two clients can download one file at once, and a listing leaves out a folder the server
 * may not read.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import type { TreeEntry } from "../lib/tree_protocol.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  filesEqual,
  makeTempDir,
  randomBytes,
  runClient,
  startServer,
  writeRandomFile,
} from "./harness.ts";
import { checksumOf } from "./wire.ts";
import { openSession } from "./raw_session.ts";

const MiB = 1 << 20;

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
  await Deno.writeTextFile(`${root}/open/denied.txt`, "d\n");
  // Denied to the server process even though the tests run as root (chmod would not stop it).
  await using server = await startServer({
    root,
    permissions: [`--deny-read=${root}/secret,${root}/open/denied.txt`],
  });

  const listed = await ferry(server, ["list", "-r"]);
  assertSuccess(listed, "list with an unreadable folder");
  assert.equal(new TextDecoder().decode(listed.stdout), "a.txt\nopen/\nopen/b.txt\n");
  // Names alone (plain list), which the server takes from a folder's read where it may read
  // everything in it, are those of the full listing (--json) here too; also where every folder
  // is sorted on disk, as a big one is (short runs).
  await using sorting = await startServer({
    root,
    permissions: [
      `--deny-read=${root}/secret,${root}/open/denied.txt`,
      "--allow-env=FERRY_TEST_FOLDER_RUN",
    ],
    env: { FERRY_TEST_FOLDER_RUN: "2" },
  });
  for (const args of [["list", "-r"], ["list"], ["list", "open"]]) {
    for (const each of [server, sorting]) {
      const plain = await ferry(each, args);
      assertSuccess(plain, args.join(" "));
      const full = await ferry(each, [...args, "--json"]);
      assertSuccess(full, `${args.join(" ")} --json`);
      const entries = JSON.parse(new TextDecoder().decode(full.stdout)) as TreeEntry[];
      assert.deepEqual(
        new TextDecoder().decode(plain.stdout),
        entries.map((e) => e.name + (e.type === "dir" ? "/\n" : "\n")).join(""),
        args.join(" "),
      );
    }
  }
  const denied = await ferry(server, ["get", "secret/hidden.txt", "-"]);
  assertFailure(denied, /no permission/i, { what: "get from the unreadable folder" });
  await server.waitForLog(/ list - \d+ bytes ok /);
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
