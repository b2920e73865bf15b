/**
 * A tree's file swapped between its lookup and its open (rsync CVE-2024-12747's kind), by a local
 * user who can write in the folder sent: for a symlink to a file only the sending process may
 * read, whose content must never be sent; or for a FIFO, whose open must never wait. Likewise a
 * file continued by a resume (a download's `.part`, the server's kept upload): never written
 * through a link, and a FIFO's open never waited on. Each opening
 * side is played through its test-only `beforeOpen` seam, in a process of its own
 * (tests/fixtures/swap_race.ts), which a FIFO's open would freeze: the bounded timeout here ends
 * it, and the test fails, rather than hanging the suite.
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertSuccess, ferry, makeTempDir, REPO_ROOT, startServer } from "./harness.ts";
import { loadCheckedOpen, openChecked, SwappedError } from "../lib/checked_open.ts";

const SECRET = "the secret only the sender may read";
const UNIX = Deno.build.os !== "windows";

/** Past KEEP_MIN_BYTES (lib/kept_uploads.ts): staged under a name known in advance. */
const BIG = (1 << 20) + 1;

/** A work folder: `tree/` with a.txt, b.txt (the one swapped), c/d.txt, and `secret` beside it. */
async function makeWork(path: string, bSize = 3): Promise<void> {
  await Deno.mkdir(`${path}/tree/c`, { recursive: true });
  await Deno.writeTextFile(`${path}/tree/a.txt`, "aaa");
  await Deno.writeTextFile(`${path}/tree/b.txt`, "b".repeat(bSize));
  await Deno.writeTextFile(`${path}/tree/c/d.txt`, "ddd");
  await Deno.writeTextFile(`${path}/secret`, SECRET);
}

/** Runs the fixture's `scenario` and parses what it printed; fails after 20 s (a frozen open). */
async function play(args: string[]): Promise<Record<string, unknown>> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-run=mkfifo",
      "--allow-env",
      `${REPO_ROOT}/tests/fixtures/swap_race.ts`,
      ...args,
    ],
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(20_000),
  }).output();
  const err = new TextDecoder().decode(output.stderr);
  assert.ok(output.signal === null, `the opening side froze (killed by ${output.signal}): ${err}`);
  assert.ok(output.success, err);
  return JSON.parse(new TextDecoder().decode(output.stdout));
}

for (const kind of ["link", "fifo"]) {
  for (const bSize of [3, 200_000]) {
    Deno.test({
      name: `put -r: a file swapped for a ${kind} after the walk fails alone (${bSize} bytes)`,
      ignore: !UNIX,
      fn: async () => {
        await using work = await makeTempDir();
        await makeWork(work.path, bSize);
        await using server = await startServer();
        const result = await play(["put", kind, work.path, String(server.port)]);
        const failed = result.failed as { path: string; message: string }[];
        assert.deepEqual(failed.map((f) => f.path), ["b.txt"]);
        assert.match(failed[0].message, /changed while being sent/);
        assert.equal(await Deno.readTextFile(`${server.root}/up/a.txt`), "aaa");
        assert.equal(await Deno.readTextFile(`${server.root}/up/c/d.txt`), "ddd");
        // The secret's content never reached the server, under any name.
        await assert.rejects(Deno.lstat(`${server.root}/up/b.txt`), Deno.errors.NotFound);
      },
    });
  }

  Deno.test({
    name: `mput: a file swapped for a ${kind} after its lookup fails alone`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      await using server = await startServer();
      const result = await play(["mput", kind, work.path, String(server.port)]);
      const failed = result.failed as { path: string; message: string }[];
      assert.deepEqual(failed.map((f) => f.path), ["b.txt"]);
      assert.match(failed[0].message, /changed while being sent/);
      assert.equal(await Deno.readTextFile(`${server.root}/a.txt`), "aaa");
      assert.equal(await Deno.readTextFile(`${server.root}/c-d.txt`), "ddd");
      await assert.rejects(Deno.lstat(`${server.root}/b.txt`), Deno.errors.NotFound);
    },
  });

  Deno.test({
    name: `put: a file swapped for a ${kind} after its lookup is refused, not read`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      const result = await play(["single", kind, work.path]);
      assert.equal(result.error, "LocalFileError", JSON.stringify(result));
      assert.match(String(result.message), /^Cannot read .*b\.txt: it changed while being sent/);
    },
  });

  Deno.test({
    name: `server: a small file swapped for a ${kind} before the disk thread opens it is not read`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      const result = await play(["read", kind, work.path]);
      assert.equal(result.error, "SwappedError", JSON.stringify(result));
      assert.match(String(result.message), /changed while being sent/);
    },
  });

  Deno.test({
    name: `server: a file swapped for a ${kind} after it is resolved is not opened`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      const result = await play(["open", kind, work.path]);
      assert.equal(result.error, "SwappedError", JSON.stringify(result));
    },
  });
}

for (const kind of ["link", "resume", "resume-fifo"]) {
  const resume = kind !== "link";
  const swapped = kind === "resume-fifo" ? "a FIFO" : "a link";
  Deno.test({
    name: `get -r${
      resume ? " --resume" : ""
    }: a big file's staging name swapped for ${swapped} is never written through`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      await Deno.writeTextFile(`${work.path}/victim`, "precious");
      await using server = await startServer();
      await Deno.mkdir(`${server.root}/src`);
      await Deno.writeFile(`${server.root}/src/big.bin`, new Uint8Array(BIG).fill(120));
      await Deno.writeTextFile(`${server.root}/src/small.txt`, "small");
      if (resume) {
        // What an interrupted run kept of big.bin, under the name a --resume looks for.
        const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode("big.bin"));
        const hex = Array.from(new Uint8Array(digest).subarray(0, 16))
          .map((b) => b.toString(16).padStart(2, "0")).join("");
        await Deno.mkdir(`${work.path}/dest`);
        await Deno.writeFile(
          `${work.path}/dest/.ferry-${hex}.part`,
          new Uint8Array(BIG >> 1).fill(120),
        );
      }
      const result = await play(["get", kind, work.path, String(server.port)]);
      const failed = result.failed as { path: string; message: string }[];
      assert.deepEqual(failed.map((f) => f.path), ["big.bin"]);
      assert.equal(await Deno.readTextFile(`${work.path}/victim`), "precious");
      assert.equal(await Deno.readTextFile(`${work.path}/dest/small.txt`), "small");
    },
  });
}

Deno.test({
  name: "get: a symlink at the download's .part name is replaced, never written through",
  ignore: !UNIX,
  fn: async () => {
    // No race needed: the `.part` name is known in advance, and the folder may be shared.
    await using work = await makeTempDir();
    await Deno.writeTextFile(`${work.path}/victim`, "precious");
    await Deno.symlink(`${work.path}/victim`, `${work.path}/got.txt.part`);
    await using server = await startServer();
    await Deno.writeTextFile(`${server.root}/file.txt`, "downloaded");
    assertSuccess(await ferry(server, ["get", "file.txt", "got.txt"], { cwd: work.path }), "get");
    assert.equal(await Deno.readTextFile(`${work.path}/got.txt`), "downloaded");
    assert.equal(await Deno.readTextFile(`${work.path}/victim`), "precious");
    assert.ok(!(await Deno.lstat(`${work.path}/got.txt`)).isSymlink);
  },
});

for (const kind of ["link", "fifo"]) {
  Deno.test({
    name:
      `get --resume: a .part swapped for a ${kind} before it is continued is refused, not opened`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      await Deno.writeTextFile(`${work.path}/victim`, "precious");
      await using server = await startServer();
      await Deno.writeFile(`${server.root}/src.bin`, new Uint8Array(BIG).fill(120));
      // What an interrupted get left: the server's first half, so the server resumes after it.
      await Deno.writeFile(`${work.path}/got.bin.part`, new Uint8Array(BIG >> 1).fill(120));
      const result = await play(["getfile", kind, work.path, String(server.port)]);
      assert.equal(result.error, "LocalFileError", JSON.stringify(result));
      assert.match(String(result.message), /^Cannot write .*got\.bin\.part: it changed as it was/);
      assert.equal(await Deno.readTextFile(`${work.path}/victim`), "precious");
      await assert.rejects(Deno.lstat(`${work.path}/got.bin`), Deno.errors.NotFound);
    },
  });

  Deno.test({
    name: `server: a kept upload swapped for a ${kind} before a resume continues it starts over`,
    ignore: !UNIX,
    fn: async () => {
      await using work = await makeTempDir();
      await makeWork(work.path);
      await Deno.writeTextFile(`${work.path}/victim`, "precious");
      const result = await play(["kept", kind, work.path]);
      // Written through nothing, and the client is told that nothing kept is used.
      assert.deepEqual(result, { kept: result.kept, offset: 0, keptDropped: true });
      assert.equal((result.kept as { kept: boolean }).kept, true);
      assert.equal(await Deno.readTextFile(`${work.path}/victim`), "precious");
    },
  });
}

Deno.test({
  name: "a staging file swapped for a FIFO as it is written is not opened by the flush behind it",
  ignore: !UNIX,
  fn: async () => {
    await using work = await makeTempDir();
    await makeWork(work.path);
    // The flush gives up (the final flush, on the writing handle, decides) instead of freezing.
    assert.deepEqual(await play(["flush", "fifo", work.path]), { flushes: 1 });
  },
});

Deno.test({
  name: "a folder where a file was looked up is a swap, whether opened to read or to write",
  ignore: !UNIX,
  fn: async () => {
    await loadCheckedOpen();
    await using dir = await makeTempDir();
    for (const write of [false, true]) {
      assert.throws(() => openChecked(dir.path, { write }), SwappedError, `write: ${write}`);
    }
  },
});
