/**
 * A resumed put whose client takes longer to check its own start than the server's idle timeout:
 * the client tells a server that names `put-resume-work` that it is hashing (KEEPALIVE
 * `{"work": N}`, lib/tree_work.ts), the server takes such notices only between its OK and the
 * first DATA and only up to the bytes it offered, and a client sends none to a server without
 * the feature.
 *
 * The client's hashing is made slow, deterministically, by the file it hashes: a reader that gives
 * 64 KiB a read, each after 100 ms (a slow disk), so 2 MiB take over 3 s against the server's
 * 1 s idle timeout (ferry-server's shortest). The client is the library's session
 * (lib/client_connect.ts), the CLI's own, given that file as the one to check.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  makeTempDir,
  randomBytes,
  type ServerProcess,
  startServer,
  waitForStagingData,
} from "./harness.ts";
import { checksumOf, concat, dataFrame, Wire } from "./wire.ts";
import { openSession, putRequest } from "./raw_session.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { connect } from "../lib/client_connect.ts";
import { PUT_RESUME_WORK_FEATURE } from "../lib/protocol.ts";
import { FILE_WORK } from "../lib/tree_work.ts";

const MiB = 1 << 20;
/** The whole file, and what the server keeps of it (over KEEP_MIN_BYTES, lib/kept_uploads.ts). */
const SIZE = 3 * MiB;
const KEPT = 2 * MiB;
/** The slow disk: bytes a read, and the wait before each. */
const PIECE = 64 << 10;
const PIECE_MS = 100;

/** A file read as a slow disk would: {@link PIECE} bytes a read, each after {@link PIECE_MS}. */
function slowly(file: Deno.FsFile) {
  return {
    read: async (p: Uint8Array) => {
      await new Promise((resolve) => setTimeout(resolve, PIECE_MS));
      return await file.read(p.subarray(0, PIECE));
    },
    seek: (offset: number, whence: Deno.SeekMode) => file.seek(offset, whence),
  };
}

/** Makes the server keep the first {@link KEPT} bytes of `bytes` as `name`: a put cut mid-way. */
async function keepUpload(server: ServerProcess, name: string, bytes: Uint8Array): Promise<void> {
  const wire = await openSession(server);
  await wire.write(putRequest(name, bytes.length));
  await wire.expectFrame(FrameType.OK, "put");
  await wire.write(dataFrame(bytes.subarray(0, KEPT)));
  await waitForStagingData(server.root, KEPT);
  wire.close();
  await server.waitForLog(new RegExp(`put "${name}" ${KEPT} bytes interrupted, kept for resume`));
}

Deno.test("put --resume: a start slower to hash than the idle timeout is told of, not cut", async () => {
  await using server = await startServer({ args: ["--idle-timeout", "1", "--no-fsync"] });
  await using work = await makeTempDir();
  const bytes = randomBytes(SIZE);
  const local = `${work.path}/big.bin`;
  await Deno.writeFile(local, bytes);
  await keepUpload(server, "big.bin", bytes);

  const session = await connect(server.host, server.port);
  try {
    assert.ok(session.welcome?.features.includes(PUT_RESUME_WORK_FEATURE));
    using file = await Deno.open(local);
    const result = await session.put(file, "big.bin", { size: SIZE, resumeFile: slowly(file) });
    assert.equal(result.resumedFrom, KEPT);
    assert.equal(result.size, SIZE);
  } finally {
    session.close();
  }
  assert.deepEqual(await Deno.readFile(`${server.root}/big.bin`), bytes);
  await server.waitForLog(/put "big\.bin" \d+ bytes ok .*resumed from 2097152/);
});

/** A raw resumed put of `bytes` as `name`, kept first; returns the wire after the server's OK. */
async function resumedPut(server: ServerProcess, name: string, bytes: Uint8Array): Promise<Wire> {
  await keepUpload(server, name, bytes);
  const wire = await openSession(server);
  await wire.write(putRequest(name, bytes.length, { resume: true }));
  const ok = await wire.expectFrame(FrameType.OK, "resumed put");
  assert.equal(ok.offset, KEPT);
  return wire;
}

/** Expects the server's ERROR `bad_request` and the connection's end. */
async function expectRefused(wire: Wire, what: string): Promise<void> {
  const error = await wire.expectFrame(FrameType.ERROR, what);
  assert.equal(error.code, "bad_request", JSON.stringify(error));
  await wire.waitForClose(5000);
}

Deno.test("put --resume: the server takes growing notices up to the offset, before DATA only", async (t) => {
  await using server = await startServer({ args: ["--no-fsync"] });
  const bytes = randomBytes(SIZE);
  const keepalive = (work: unknown) => encodeControl(FrameType.KEEPALIVE, { work });

  await t.step("notices within the offset, then the rest: stored whole", async () => {
    using wire = await resumedPut(server, "a.bin", bytes);
    await wire.write(
      concat([keepalive(FILE_WORK), keepalive(KEPT), dataFrame(bytes.subarray(KEPT))]),
    );
    await wire.write(
      encodeControl(FrameType.END, { size: SIZE, checksum: await checksumOf(bytes) }),
    );
    const ok = await wire.expectFrame(FrameType.OK, "verdict");
    assert.equal(ok.size, SIZE);
    assert.deepEqual(await Deno.readFile(`${server.root}/a.bin`), bytes);
  });

  await t.step("a claim past the offset is refused", async () => {
    using wire = await resumedPut(server, "b.bin", bytes);
    await wire.write(concat([keepalive(FILE_WORK), keepalive(KEPT + 1)]));
    await expectRefused(wire, "claim past the offset");
  });

  await t.step("a claim that does not grow is refused", async () => {
    using wire = await resumedPut(server, "c.bin", bytes);
    await wire.write(concat([keepalive(FILE_WORK), keepalive(FILE_WORK)]));
    await expectRefused(wire, "claim that does not grow");
  });

  await t.step("a notice after DATA is a stray frame", async () => {
    using wire = await resumedPut(server, "d.bin", bytes);
    await wire.write(concat([dataFrame(bytes.subarray(KEPT, KEPT + 10)), keepalive(KEPT)]));
    await expectRefused(wire, "notice after DATA");
  });

  await t.step("a notice in a put that resumes nothing is a stray frame", async () => {
    using wire = await openSession(server);
    await wire.write(putRequest("e.bin", SIZE));
    await wire.expectFrame(FrameType.OK, "put");
    await wire.write(keepalive(FILE_WORK));
    await expectRefused(wire, "notice in a fresh put");
  });
});

for (const feature of [false, true]) {
  Deno.test(
    `put --resume: the client sends work notices ${
      feature ? "to a server that names the feature" : "to no server without the feature"
    }`,
    async () => {
      await using work = await makeTempDir();
      const bytes = randomBytes(SIZE);
      const local = `${work.path}/big.bin`;
      await Deno.writeFile(local, bytes);
      const prefix = await checksumOf(bytes.subarray(0, KEPT));
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const notices: number[] = [];
      const serving = (async () => {
        using wire = new Wire(await listener.accept());
        await wire.acceptHandshake({
          welcome: {
            server: "fake/0",
            features: feature ? ["tree", PUT_RESUME_WORK_FEATURE] : ["tree"],
            keepalive: 100,
          },
        });
        await wire.expectFrame(FrameType.REQUEST, "put");
        await wire.write(encodeControl(FrameType.OK, { offset: KEPT, prefix }));
        for (;;) {
          const frame = await wire.readFrame();
          assert.ok(frame, "the client closed before its data");
          if (frame.type !== FrameType.KEEPALIVE) {
            assert.equal(frame.type, FrameType.DATA, "the data follows the check");
            return;
          }
          notices.push(frame.json!.work as number);
        }
      })();
      const session = await connect("127.0.0.1", (listener.addr as Deno.NetAddr).port);
      try {
        using file = await Deno.open(local);
        // The fake server hangs up after the first DATA: the put fails, as it should.
        await assert.rejects(
          session.put(file, "big.bin", { size: SIZE, resumeFile: slowly(file) }),
        );
      } finally {
        session.close();
        listener.close();
      }
      await serving;
      if (!feature) {
        assert.deepEqual(notices, []);
        return;
      }
      // Over 3 s of hashing at a notice every 0.1 s: several, growing, never past the offset.
      assert.ok(notices.length >= 2, `notices: ${notices}`);
      assert.ok(notices.every((n, i) => i === 0 || n > notices[i - 1]), `growing: ${notices}`);
      assert.ok(notices.at(-1)! <= KEPT, `within the offset: ${notices}`);
    },
  );
}
