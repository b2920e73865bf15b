/**
 * Memory stays bounded whatever a hostile peer announces in a tree transfer: a sender that runs
 * its manifest ahead of its files is refused (by the server, and by `get -r`), a receiver that
 * answers batches never sent is refused, and one that never reports what it received stops the
 * sender after {@link MAX_UNREPORTED} files. The server keeps serving others meanwhile, and the
 * client writes a big tree's `--json` reports out as they gather instead of holding them all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { MAX_UNREPORTED } from "../lib/tree_send.ts";
import {
  assertFailure,
  assertSuccess,
  ferry,
  makeTempDir,
  spawnClient,
  startServer,
} from "./harness.ts";
import { concat, TREE_PEER, Wire, withFakeServer } from "./wire.ts";

/** Entries per batch of {@link batch}: as many as fit in a frame. */
const PER_BATCH = 900;

/** Batch `k` of a manifest of files that nobody has: every one of them is wanted. */
function batch(k: number): Uint8Array {
  const entries = Array.from({ length: PER_BATCH }, (_, i) => ({
    path: `f${String(k * PER_BATCH + i).padStart(6, "0")}`,
    type: "file",
    size: 1,
    mtime: 0,
    mode: 0o644,
  }));
  return encodeControl(FrameType.MANIFEST, { entries, last: false });
}

Deno.test("the server refuses a put -r sender that runs its manifest ahead of its files, and serves others", async () => {
  await using server = await startServer();
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "put_tree", name: "t" }));
  await wire.expectFrame(FrameType.OK, "accepted");
  // Two batches are what an honest sender has in flight: both are answered, every file wanted.
  await wire.write(concat([batch(0), batch(1)]));
  for (let k = 0; k < 2; k++) {
    const want = await wire.expectFrame(FrameType.WANT, `want ${k}`);
    assert.equal((want.want as number[]).length, PER_BATCH);
  }
  // Meanwhile the server serves another client.
  const listed = await ferry(server, ["list"]);
  assert.equal(listed.code, 0, listed.stderr);
  // A third batch with none of the first one's files sent: refused, not held.
  await wire.writeQuietly(batch(2));
  const error = await wire.expectFrame(FrameType.ERROR, "refusal");
  assert.match(String(error.message), /ran more than one manifest batch ahead of its files/);
  await wire.waitForClose(10000);
  await server.waitForLog(/failed \(bad_request: Refused tree: the sender ran more/);
  assert.equal((await ferry(server, ["list"])).code, 0, "still serving");
});

Deno.test("get -r refuses a hostile server that runs its manifest ahead of its files", async () => {
  await using work = await makeTempDir();
  const local = `${work.path}/dest`;
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(concat([encodeControl(FrameType.OK, {}), batch(0), batch(1)]));
      await wire.expectFrame(FrameType.WANT, "want 0");
      await wire.expectFrame(FrameType.WANT, "want 1");
      await wire.writeQuietly(batch(2));
      await wire.waitForClose(10000);
    },
    (port) => ferry({ host: "127.0.0.1", port }, ["get", "-r", "x", local]),
    TREE_PEER,
  );
  assertFailure(result, /ran more than one manifest batch ahead of its files/, {
    what: "get -r",
  });
  assert.deepEqual([...Deno.readDirSync(local)], [], "nothing written");
});

/** A raw get -r of `name`: the manifest batches are answered as they come, every file wanted. */
async function rawGetTree(wire: Wire, name: string) {
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "get_tree", name }));
  await wire.expectFrame(FrameType.OK, "accepted");
  let from = 0;
  return {
    /** Reads frames, answering manifests, until a FILE's data phase has been read. */
    async nextFile(): Promise<number> {
      for (;;) {
        const frame = await wire.readFrame();
        assert.ok(frame, "server closed");
        if (frame.type === FrameType.MANIFEST) {
          const entries = frame.json!.entries as unknown[];
          const want = entries.map((_, i) => from + i);
          from += entries.length;
          await wire.write(encodeControl(FrameType.WANT, { want }));
          continue;
        }
        assert.equal(frame.type, FrameType.FILE, JSON.stringify(frame.json));
        await wire.expectFrame(FrameType.END, "end of an empty file");
        return frame.json!.index as number;
      }
    },
  };
}

Deno.test("get -r: the server stops sending when the client never reports, and refuses stray WANTs", async () => {
  await using server = await startServer();
  const extra = 5;
  await Deno.mkdir(`${server.root}/t`);
  for (let i = 0; i < MAX_UNREPORTED + 2 * extra; i++) {
    Deno.writeFileSync(`${server.root}/t/${String(i).padStart(5, "0")}`, new Uint8Array());
  }
  {
    using wire = await Wire.connect(server);
    const get = await rawGetTree(wire, "t");
    for (let i = 0; i < MAX_UNREPORTED; i++) assert.equal(await get.nextFile(), i);
    // Five reports let exactly five more files go.
    for (let i = 0; i < extra; i++) {
      await wire.write(encodeControl(FrameType.RESULT, { index: i, ok: true }));
    }
    for (let i = 0; i < extra; i++) assert.equal(await get.nextFile(), MAX_UNREPORTED + i);
    // ...and no more, however long the client waits.
    wire.readTimeoutMs = 1000;
    await assert.rejects(get.nextFile(), /Peer sent nothing for 1000 ms/);
  }
  assert.equal((await ferry(server, ["list"])).code, 0, "still serving");

  // A WANT for a batch that was never sent is refused, not queued.
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "get_tree", name: "t" }));
  await wire.expectFrame(FrameType.OK, "accepted");
  await wire.write(
    concat(Array.from({ length: 8 }, () => encodeControl(FrameType.WANT, { want: [] }))),
  );
  let frame = await wire.readFrame();
  while (frame && frame.type !== FrameType.ERROR) frame = await wire.readFrame();
  assert.ok(frame, "ERROR");
  assert.match(String(frame.json!.message), /WANT for a manifest batch that was not sent/);
});

Deno.test("get -r --json writes its reports out as they gather, not all at the end", async () => {
  await using work = await makeTempDir();
  const seen = Promise.withResolvers<void>();
  const notes = (k: number) =>
    Array.from({ length: 1024 }, (_, i) => ({ path: `n${k}-${i}`, message: "left out" }));
  const manifest = (k: number, last = false) =>
    encodeControl(FrameType.MANIFEST, { entries: [], last, ...(last ? {} : { notes: notes(k) }) });
  const result = await withFakeServer(async (wire) => {
    await wire.write(concat([encodeControl(FrameType.OK, {}), manifest(0), manifest(1)]));
    await wire.expectFrame(FrameType.WANT, "want 0");
    await wire.expectFrame(FrameType.WANT, "want 1");
    // The transfer is not over, and its first reports are on stdout already.
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      seen.promise,
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("no report before the end")), 20000);
      }),
    ]).finally(() => clearTimeout(timer));
    await wire.write(manifest(2, true));
    await wire.expectFrame(FrameType.WANT, "want 2");
    await wire.write(encodeControl(FrameType.FINISH, {}));
    await wire.expectFrame(FrameType.OK, "summary");
    await wire.waitForClose(10000);
  }, async (port) => {
    const args = ["127.0.0.1", String(port), "get", "-r", "x", `${work.path}/dest`, "--json"];
    const child = spawnClient([...args, "--quiet"]);
    await child.stdin.close();
    const stderr = new Response(child.stderr).text();
    let text = "";
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      text += chunk;
      if (text.split("\n").length > 1024) seen.resolve();
    }
    return {
      code: (await child.status).code,
      stdout: new TextEncoder().encode(text),
      stderr: await stderr,
    };
  }, TREE_PEER);
  assertSuccess(result, "get -r --json");
  const lines = new TextDecoder().decode(result.stdout).trim().split("\n");
  assert.equal(lines.length, 2 * 1024 + 1, "every report, then the summary");
  assert.equal(JSON.parse(lines[0]).action, "ignored");
});
