/**
 * The names a tree transfer's receiver reports it deleted (`--delete`, RESULT `{"deleted": NAME}`)
 * are bounded as the removals its work notices claim (lib/tree_work.ts, `PeerWork.deleted`): a
 * server cuts a get -r client that reports them slower than its `--min-rate` while it sends
 * nothing, and refuses one whose reports and claimed removals together pass the bound; a put -r
 * client refuses a server that does the same. Each report is bytes on the wire, so without this a
 * client trickling one a minute held its connection for ever. The bound, 16,777,216, is lowered
 * for the test with `FERRY_TEST_REMOVED_AT_MOST` (docs/testing.md).
 *
 * @module
 */

import assert from "node:assert/strict";
import { ferry, makeTempDir, type ServerProcess, startServer } from "./harness.ts";
import { concat, TREE_PEER, Wire, withFakeServer } from "./wire.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";

/** The bound the programs under test keep. */
const AT_MOST = 5;

const seam = {
  env: { FERRY_TEST_REMOVED_AT_MOST: String(AT_MOST) },
  permissions: ["--allow-env=FERRY_TEST_REMOVED_AT_MOST"],
};

/** The server's answer that ends a transfer: the first ERROR, whatever comes before it. */
async function refusal(wire: Wire): Promise<Record<string, unknown>> {
  let frame = await wire.readFrame();
  while (frame && frame.type !== FrameType.ERROR) frame = await wire.readFrame();
  assert.ok(frame, "an ERROR before the server closes");
  return frame.json!;
}

/** A raw get -r of the server's folder `t`, up to its MANIFEST (whose WANT it holds). */
async function rawGet(server: ServerProcess, phases = false): Promise<Wire> {
  const wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, {
    op: "get_tree",
    name: "t",
    ...(phases ? { phase_work: true } : {}),
  }));
  await wire.expectFrame(FrameType.OK, "accepted");
  await wire.expectFrame(FrameType.MANIFEST, "manifest");
  return wire;
}

const deleted = (name: string) => encodeControl(FrameType.RESULT, { deleted: name });

Deno.test("the server cuts a get -r client that reports deleted names slower than its minimum rate", async () => {
  // An entry counts for 4096 bytes: at 1 MiB/s, one report each 4 ms at the least. Reports 100 ms
  // apart keep the idle timeout (1 s) away, so only the rate can cut them.
  await using server = await startServer({
    args: ["--idle-timeout", "1", "--min-rate", String(1 << 20)],
  });
  await Deno.mkdir(`${server.root}/t`);
  await Deno.writeTextFile(`${server.root}/t/a`, "alpha\n");
  using wire = await rawGet(server);
  // The first report only starts the count; the second, 100 ms later, is 25 times too slow.
  await wire.write(deleted("x0"));
  await new Promise((resolve) => setTimeout(resolve, 100));
  await wire.write(deleted("x1"));
  const error = await refusal(wire);
  assert.equal(error.code, "timeout", JSON.stringify(error));
  assert.match(String(error.message), /Work notices slower than 1.00 MiB\/s/);
  await server.waitForLog(/closed: work notices slower than 1.00 MiB\/s/);
});

Deno.test("the server refuses a get -r client whose deleted names and claimed removals pass the bound", async () => {
  await using server = await startServer(seam);
  await Deno.mkdir(`${server.root}/t`);
  await Deno.writeTextFile(`${server.root}/t/a`, "alpha\n");
  {
    // Three entries removed and two names reported: five, the bound; the transfer ends as usual.
    using wire = await rawGet(server, true);
    await wire.write(concat([
      encodeControl(FrameType.KEEPALIVE, { removed: 3 }),
      deleted("x0"),
      deleted("x1"),
      encodeControl(FrameType.WANT, { want: [] }),
    ]));
    await wire.expectFrame(FrameType.FINISH, "finish");
    const summary = { files: 0, skipped: 1, deleted: 2, failed: 0, bytes: 0 };
    await wire.write(encodeControl(FrameType.OK, summary));
    assert.match(await server.waitForLog(/get_tree "t"/), / ok 0 files/);
  }
  const refused = async (phases: boolean, frames: Uint8Array[]) => {
    using wire = await rawGet(server, phases);
    await wire.write(concat(frames));
    const error = await refusal(wire);
    assert.equal(error.code, "bad_request", JSON.stringify(error));
    assert.match(String(error.message), /more entries removed or deleted than any tree holds/);
  };
  // One report more, with the removals claimed before or after it, or reports alone.
  await refused(true, [
    encodeControl(FrameType.KEEPALIVE, { removed: 3 }),
    ...["a", "b", "c"].map(deleted),
  ]);
  await refused(true, [
    ...["a", "b", "c"].map(deleted),
    encodeControl(FrameType.KEEPALIVE, { removed: 3 }),
  ]);
  await refused(false, ["a", "b", "c", "d", "e", "f"].map(deleted));
});

Deno.test("the server refuses a get -r client that reports a file twice, or one not sent after its WANT", async () => {
  await using server = await startServer();
  await Deno.mkdir(`${server.root}/t`);
  await Deno.writeTextFile(`${server.root}/t/a`, "alpha\n");
  await Deno.writeTextFile(`${server.root}/t/b`, "beta\n");
  const failed = (index: number) =>
    encodeControl(FrameType.RESULT, { index, ok: false, message: "refused" });
  const refused = async (frames: Uint8Array[], message: RegExp) => {
    using wire = await rawGet(server);
    await wire.write(concat(frames));
    const error = await refusal(wire);
    assert.equal(error.code, "bad_request", JSON.stringify(error));
    assert.match(String(error.message), message);
  };
  // A file refused on reading the manifest is reported once, before the WANT: else a client
  // could repeat the report for as long as it holds the WANT back, as with deleted names.
  await refused([failed(0), failed(0)], /RESULT for a file reported already/);
  // After the WANT, whether the server is done with the batch yet or not.
  await refused(
    [encodeControl(FrameType.WANT, { want: [1] }), failed(0)],
    /RESULT for a file (reported already|that was not sent)/,
  );
});

Deno.test("put -r refuses a server that reports more deleted names than the bound", async () => {
  await using work = await makeTempDir();
  await Deno.mkdir(`${work.path}/t`);
  await Deno.writeTextFile(`${work.path}/t/a.txt`, "a");
  const result = await withFakeServer(
    async (wire) => {
      await wire.write(encodeControl(FrameType.OK, {}));
      await wire.expectFrame(FrameType.MANIFEST, "manifest");
      const names = Array.from({ length: AT_MOST + 1 }, (_, i) => deleted(`gone/${i}`));
      await wire.write(concat([encodeControl(FrameType.WANT, { want: [] }), ...names]));
      // A client that takes them all finishes, and hears the end; one that refuses goes.
      let frame = await wire.readFrame();
      while (frame && frame.type !== FrameType.FINISH) frame = await wire.readFrame();
      if (frame) {
        const summary = { files: 0, skipped: 1, deleted: AT_MOST + 1, failed: 0, bytes: 0 };
        await wire.write(encodeControl(FrameType.OK, summary));
      }
      await wire.waitForClose(10000);
    },
    (port) =>
      ferry(
        { host: "127.0.0.1", port },
        ["put", "-r", "--dry-run", `${work.path}/t`],
        seam,
      ),
    TREE_PEER,
  );
  const stdout = new TextDecoder().decode(result.stdout);
  assert.equal(result.code, 1, `${stdout}\n${result.stderr}`);
  assert.match(result.stderr, /more entries removed or deleted than any tree holds/);
  const lines = stdout.split("\n").filter((line) => line.startsWith("delete "));
  assert.ok(lines.length <= AT_MOST, stdout);
});

Deno.test("get -r --delete of names spread over manifest batches keeps to the minimum rate though files go between them", async () => {
  // Each name reported counts for 4096 bytes: at 8 KiB/s, half a second's worth. The receiver
  // deletes as each batch comes, and the first 2 MiB file, paced at 1 MiB/s, goes between two
  // batches' reports: seconds without one, while the server sends. Live traffic, not a crawl; the
  // last file keeps the transfer going for the watchdog's ticks to see it through.
  await using server = await startServer({ args: ["--min-rate", "8192"] });
  await using work = await makeTempDir();
  const src = `${server.root}/src`;
  const dst = `${work.path}/dst`;
  await Deno.mkdir(src);
  await Deno.mkdir(dst);
  await Deno.writeFile(`${src}/a.bin`, new Uint8Array(2 << 20));
  await Deno.writeFile(`${src}/z.bin`, new Uint8Array(2 << 20));
  await Deno.writeTextFile(`${dst}/a.bin`, "old");
  // Long names: a manifest batch (48 KiB at most) holds about 170 of them, so 400 make three.
  const pad = "n".repeat(200);
  let extras = 0;
  for (let i = 0; i < 400; i++) {
    const name = `f${String(i).padStart(3, "0")}${pad}`;
    await Deno.writeTextFile(`${src}/${name}`, "x");
    if (i % 10 === 0) {
      await Deno.writeTextFile(`${dst}/${name}-extra`, "x");
      extras++;
    }
  }
  const result = await ferry(server, [
    "--json",
    "get",
    "-r",
    "--delete",
    "--limit-rate",
    "1M",
    "src",
    dst,
  ]);
  const line = await server.waitForLog(/get_tree "src"/);
  assert.equal(result.code, 0, `${result.stderr}\n${server.lines.join("\n")}`);
  assert.match(line, new RegExp(` ok 402 files, 0 skipped, ${extras} deleted`));
  assert.equal([...Deno.readDirSync(dst)].length, 402);
});
