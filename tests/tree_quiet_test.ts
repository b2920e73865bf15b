/**
 * Hashing that outlasts the peer's timeouts: in tree transfers with `--checksum` each end tells
 * the other it is at work (KEEPALIVE with the bytes it has hashed, lib/tree_work.ts), and a server
 * checking the start of a file for `get --resume` sends KEEPALIVE, so neither the server's idle
 * timeout nor the client's `--stall-timeout` cuts a transfer that is only busy; and a raw client
 * that claims work it does not do is still cut.
 *
 * The server runs in this process, where its idle timeout can be a fraction of a second
 * (`--idle-timeout` takes whole seconds). The files are sparse and the same on both ends, so each
 * end hashes them and nothing is sent. They live on a tmpfs mounted for the test: a hole there
 * reads as the shared zero page, at a steady few GB/s and with no memory taken, where a disk's
 * filesystem fills the page cache with zeros first, at whatever speed the machine's memory
 * pressure allows (10 to 100 times slower, measured on a loaded machine).
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertSuccess, ferry, makeTempDir, startServer as startProgram } from "./harness.ts";
import { encodeControl, FrameType } from "../lib/frames.ts";
import { Wire } from "./wire.ts";
import { MOUNT_ALLOWED, withTmpfs } from "./tmpfs.ts";
import { summaryOf } from "./tree_helpers.ts";
import { startServer } from "../lib/server.ts";

/**
 * Sparse files: 12 GiB on each end, about 2 s of hashing each from a tmpfs on a quiet machine,
 * twice the timeouts below or more.
 */
const FILE_SIZE = 4 * 1024 ** 3;
const FILES = 3;

/**
 * The server's idle timeout, and the client's stall timeout: a notice every 0.25 s, so that only
 * a process kept off the CPUs for a whole second by the tests running beside it could miss one.
 */
const IDLE_MS = 1000;
const STALL = "1";

/** Makes `dir` with {@link FILES} sparse files of {@link FILE_SIZE} bytes, all of one mtime. */
async function sparseTree(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  for (let i = 0; i < FILES; i++) {
    const path = `${dir}/big${i}.bin`;
    await Deno.writeFile(path, new Uint8Array(0));
    await Deno.truncate(path, FILE_SIZE);
    await Deno.utime(path, 1_700_000_000, 1_700_000_000);
  }
}

/** The server, in this process, on `disk`'s root with the short idle timeout; its log to `lines`. */
function quietServer(disk: string, lines: string[]) {
  return startServer({
    root: `${disk}/root`,
    port: 0,
    idleTimeoutMs: IDLE_MS,
    fsync: false,
    log: (line) => lines.push(line),
  });
}

/**
 * Runs `ferry ... args` against a server on port 0 (idle timeout {@link IDLE_MS}) serving
 * `root`, both ends' trees made first by `prepare` under `disk`, a tmpfs; asserts that it
 * succeeds with every file skipped. Twice: with a stall timeout, where whichever end hashes
 * first is what a cut would catch, and without, where only the server's idle timeout is left,
 * which the client's hashing must not run into, nor the server's own.
 */
async function quietTransfer(
  prepare: (disk: string) => Promise<void>,
  args: (disk: string) => string[],
): Promise<void> {
  await using work = await makeTempDir();
  const disk = `${work.path}/disk`;
  // Sparse files take no room: the size only has to hold them.
  await withTmpfs(disk, `size=${4 * FILES * FILE_SIZE}`, async () => {
    await prepare(disk);
    const lines: string[] = [];
    const server = await quietServer(disk, lines);
    try {
      const endpoint = { host: "127.0.0.1", port: server.addr.port };
      for (const stall of [["--stall-timeout", STALL], []]) {
        const command = [...stall, "--json", ...args(disk)];
        const result = await ferry(endpoint, command);
        assertSuccess(result, `${command.join(" ")}; server log:\n${lines.join("\n")}`);
        const summary = summaryOf(result);
        assert.equal(summary.skipped, FILES, `same files on both ends: ${JSON.stringify(summary)}`);
        assert.equal(summary.failed, 0);
      }
    } finally {
      await server.close();
    }
  });
}

Deno.test({
  name: "put -r --checksum of big files: neither end's hashing lets the other's timeout cut it",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await quietTransfer(async (disk) => {
      await sparseTree(`${disk}/src`);
      await sparseTree(`${disk}/root/dst`);
    }, (disk) => ["put", "-r", "--checksum", `${disk}/src`, "dst"]);
  },
});

Deno.test({
  name: "get -r --checksum of big files: neither end's hashing lets the other's timeout cut it",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await quietTransfer(async (disk) => {
      await sparseTree(`${disk}/root/src`);
      await sparseTree(`${disk}/dst`);
    }, (disk) => ["get", "-r", "--checksum", "src", `${disk}/dst`]);
  },
});

Deno.test({
  name: "get --resume of a big file: the server's check of its start does not let a timeout cut it",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using work = await makeTempDir();
    const disk = `${work.path}/disk`;
    const kept = FILES * FILE_SIZE;
    await withTmpfs(disk, `size=${4 * kept}`, async () => {
      await Deno.mkdir(`${disk}/root`, { recursive: true });
      // The server's file is the client's part and 1 KiB more, all zeros.
      await Deno.writeFile(`${disk}/root/big.bin`, new Uint8Array(0));
      await Deno.truncate(`${disk}/root/big.bin`, kept + 1024);
      await Deno.writeFile(`${disk}/big.bin.part`, new Uint8Array(0));
      await Deno.truncate(`${disk}/big.bin.part`, kept);
      const lines: string[] = [];
      const server = await quietServer(disk, lines);
      try {
        const endpoint = { host: "127.0.0.1", port: server.addr.port };
        const command = ["--stall-timeout", STALL, "get", "--resume", "big.bin", `${disk}/big.bin`];
        const result = await ferry(endpoint, command);
        assertSuccess(result, `${command.join(" ")}; server log:\n${lines.join("\n")}`);
        assert.equal((await Deno.stat(`${disk}/big.bin`)).size, kept + 1024);
        assert.ok(lines.some((line) => /resumed from \d+/.test(line)), lines.join("\n"));
      } finally {
        await server.close();
      }
    });
  },
});

// ------------------------------------------------------------------ claims that do not hold

/** The server's answer that ends a transfer: the first ERROR, whatever comes before it. */
async function refusal(wire: Wire): Promise<Record<string, unknown>> {
  let frame = await wire.readFrame();
  while (frame && frame.type !== FrameType.ERROR) frame = await wire.readFrame();
  assert.ok(frame, "an ERROR before the server closes");
  return frame.json!;
}

/** A checksum manifest entry of a file of `size` bytes (its checksum is not looked at first). */
function summed(path: string, size: number): Record<string, unknown> {
  return {
    path,
    type: "file",
    size,
    mtime: 0,
    mode: 0o644,
    checksum: "xxh128:00000000000000000000000000000000",
  };
}

Deno.test("the server cuts a tree transfer whose work notices do not grow, outrun its manifest, or crawl", async () => {
  await using server = await startProgram({ args: ["--idle-timeout", "2"] });
  const putTree = async () => {
    const wire = await Wire.connect(server);
    const welcome = await wire.handshake();
    // A quarter of the idle timeout: how often a client at work should say so.
    assert.equal(welcome.keepalive, 500);
    await wire.write(
      encodeControl(FrameType.REQUEST, { op: "put_tree", name: "t", checksum: true }),
    );
    await wire.expectFrame(FrameType.OK, "accepted");
    return wire;
  };
  {
    // A notice must carry work that grew.
    using wire = await putTree();
    await wire.write(encodeControl(FrameType.KEEPALIVE, { work: 1 << 20 }));
    await wire.write(encodeControl(FrameType.KEEPALIVE, { work: 1 << 20 }));
    const error = await refusal(wire);
    assert.equal(error.code, "bad_request");
    assert.match(String(error.message), /without growing work/);
  }
  {
    // What it claimed to hash must be in the batch that follows.
    using wire = await putTree();
    await wire.write(encodeControl(FrameType.KEEPALIVE, { work: 10 << 20 }));
    await wire.write(
      encodeControl(FrameType.MANIFEST, { entries: [summed("a", 1 << 20)], last: true }),
    );
    const error = await refusal(wire);
    assert.equal(error.code, "bad_request");
    assert.match(String(error.message), /claims more work than the files listed/);
  }
  {
    // Growth under the minimum rate (256 B/s) from one notice to the next: cut as too slow.
    using wire = await putTree();
    await wire.write(encodeControl(FrameType.KEEPALIVE, { work: 1 << 20 }));
    await new Promise((resolve) => setTimeout(resolve, 500));
    await wire.write(encodeControl(FrameType.KEEPALIVE, { work: (1 << 20) + 1 }));
    const error = await refusal(wire);
    assert.equal(error.code, "timeout");
    assert.match(String(error.message), /Work notices slower than 256 B\/s/);
  }
  await server.waitForLog(/closed: work notices slower than 256 B\/s/);
});

Deno.test("the server cuts a get -r client whose work notices claim more than the files it was sent", async () => {
  await using server = await startProgram();
  await Deno.mkdir(`${server.root}/t`);
  await Deno.writeTextFile(`${server.root}/t/a`, "alpha\n");
  using wire = await Wire.connect(server);
  await wire.handshake();
  await wire.write(encodeControl(FrameType.REQUEST, { op: "get_tree", name: "t", checksum: true }));
  await wire.expectFrame(FrameType.OK, "accepted");
  const manifest = await wire.expectFrame(FrameType.MANIFEST, "manifest");
  assert.equal((manifest.entries as unknown[]).length, 1);
  // The client hashes only its copies of the files listed, each at most twice (whole for
  // --checksum, and its start against a part kept for --resume), a file counting for 64 KiB at
  // least: 6 bytes here.
  await wire.write(encodeControl(FrameType.KEEPALIVE, { work: 2 * 65536 }));
  await wire.write(encodeControl(FrameType.KEEPALIVE, { work: 2 * 65536 + 1 }));
  const error = await refusal(wire);
  assert.equal(error.code, "bad_request");
  assert.match(String(error.message), /claims more work than the files listed/);
});
