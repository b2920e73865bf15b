/**
 * Integration tests of full disks, on a small tmpfs mounted at test time (root only): a get into
 * a read-only folder or onto a full local disk, and a full server disk mid-upload, fail in one
 * line naming the file, leave nothing behind, and the server goes on.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertFailure,
  assertSuccess,
  ferry,
  filesEqual,
  listDir,
  makeTempDir,
  pathExists,
  randomBytes,
  storedFiles,
  waitForEmptyStaging,
  writeRandomFile,
} from "./harness.ts";
import { MOUNT_ALLOWED, withTmpfs } from "./tmpfs.ts";
import { launchServer, sameBytes } from "./launched_server.ts";

const MiB = 1 << 20;

// ----------------------------------------------------------------------------------- full disk

Deno.test({
  name: "get into a read-only folder fails before the server is asked for anything",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const readOnly = `${base.path}/ro`;
    await withTmpfs(readOnly, "ro,size=1m", async () => {
      const root = `${base.path}/root`;
      await Deno.mkdir(root);
      await writeRandomFile(`${root}/big.bin`, 4 * MiB);
      await using server = await launchServer(root);
      // As root, permissions would not stop the write; a read-only mount stops everyone.
      const result = await ferry(server, ["get", "big.bin", `${readOnly}/big.bin`]);
      assertFailure(result, /^ferry: Cannot write .*big\.bin\.part: read-only file system$/, {
        what: "get into a read-only folder",
      });
      assert.deepEqual(await listDir(readOnly), [], "nothing made there");
      // The server logs every request when it ends. A list made afterwards, on a connection of
      // its own, is logged after the get would have been (its connection was long closed).
      assertSuccess(await ferry(server, ["list"]), "list afterwards");
      await server.waitForLog(/ list /);
      const gets = server.lines.filter((line) => / get "/.test(line));
      assert.deepEqual(gets, [], "the server was never asked for the file");
    });
  },
});

Deno.test({
  name:
    "a full disk mid-upload: an out-of-space error, nothing left behind, and the server goes on",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const disk = `${base.path}/disk`;
    await withTmpfs(disk, "size=8m", async () => {
      const root = `${disk}/root`;
      await writeRandomFile(`${base.path}/big.bin`, 20 * MiB);
      await using server = await launchServer(root);

      const fromFile = await ferry(server, ["put", `${base.path}/big.bin`]);
      assertFailure(fromFile, /out of (disk )?space/i, { what: "20 MiB put to an 8 MiB disk" });
      await server.waitForLog(/ put "big\.bin" \d+ bytes failed \(no_space/);
      await waitForEmptyStaging(root);
      assert.equal(await pathExists(`${root}/big.bin`), false, "nothing under the name");

      const fromStdin = await ferry(server, ["put", "-", "piped.bin"], {
        stdin: randomBytes(20 * MiB),
      });
      assertFailure(fromStdin, /out of (disk )?space/i, { what: "20 MiB stream to an 8 MiB disk" });
      await server.waitForLog(/ put "piped\.bin" \d+ bytes failed \(no_space/);
      await waitForEmptyStaging(root);
      assert.deepEqual(await storedFiles(root), [], "nothing stored");

      // The space came back with the staging files, and the server is still serving.
      const small = randomBytes(MiB);
      assertSuccess(await ferry(server, ["put", "-", "small.bin"], { stdin: small }), "small put");
      const got = await ferry(server, ["get", "small.bin", "-"]);
      assertSuccess(got, "get after the full disk");
      assert.ok(sameBytes(got.stdout, small), "the small file came back intact");
      assert.deepEqual(await storedFiles(root), ["small.bin"]);
      assert.ok(server.running, "the server is still running");
    });
  },
});

Deno.test({
  name:
    "a get onto a full local disk fails naming the file, leaves nothing, and the disk has room again",
  ignore: !MOUNT_ALLOWED, // mounting a tmpfs needs root (CAP_SYS_ADMIN)
  async fn() {
    await using base = await makeTempDir();
    const root = `${base.path}/root`;
    await Deno.mkdir(root);
    await writeRandomFile(`${root}/big.bin`, 20 * MiB);
    await using server = await launchServer(root);
    const disk = `${base.path}/disk`;
    await withTmpfs(disk, "size=8m", async () => {
      // The client writes a regular file on its main thread (writeSync): its out-of-space error
      // must still be one line about the local file, not a crash or a network error.
      for (const flags of [[], ["--no-fsync"]]) {
        const result = await ferry(server, ["get", "big.bin", `${disk}/big.bin`, ...flags]);
        assertFailure(result, /^ferry: Cannot write .*big\.bin\.part: no space left on device$/, {
          what: `20 MiB get onto an 8 MiB disk ${flags.join(" ")}`,
        });
        assert.deepEqual(await listDir(disk), [], "no .part and no file left behind");
      }
      await writeRandomFile(`${root}/small.bin`, MiB);
      assertSuccess(await ferry(server, ["get", "small.bin", `${disk}/small.bin`]), "small get");
      assert.ok(await filesEqual(`${root}/small.bin`, `${disk}/small.bin`), "small file intact");
    });
  },
});
