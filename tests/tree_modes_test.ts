/**
 * What a tree transfer's receiver gives of the sender's permission bits: everything but write for
 * others. A peer cannot make the receiver's files or folders writable by every local user (who
 * could then change a file others download, or plant a symlink in a served folder); a folder that
 * was sticky and world-writable on the sender (`/tmp`'s 1777) would otherwise arrive without its
 * sticky bit, writable by all.
 *
 * @module
 */

import assert from "node:assert/strict";
import { makeTempDir, startServer } from "./harness.ts";
import { ok } from "./tree_helpers.ts";

/** A tree with a world-writable file, folder and sticky folder, and a group-writable file. */
async function writeOpenTree(dir: string): Promise<void> {
  await Deno.mkdir(`${dir}/open`, { recursive: true });
  await Deno.mkdir(`${dir}/drop`);
  await Deno.writeTextFile(`${dir}/open/w.txt`, "w\n");
  await Deno.writeTextFile(`${dir}/g.txt`, "g\n");
  await Deno.chmod(`${dir}/open/w.txt`, 0o666);
  await Deno.chmod(`${dir}/g.txt`, 0o664);
  await Deno.chmod(`${dir}/open`, 0o777);
  await Deno.chmod(`${dir}/drop`, 0o1777);
  await Deno.chmod(dir, 0o777);
}

async function modesOf(dir: string): Promise<Record<string, string>> {
  const mode = async (path: string) => ((await Deno.stat(path)).mode! & 0o7777).toString(8);
  return {
    ".": await mode(dir),
    open: await mode(`${dir}/open`),
    drop: await mode(`${dir}/drop`),
    "open/w.txt": await mode(`${dir}/open/w.txt`),
    "g.txt": await mode(`${dir}/g.txt`),
  };
}

const EXPECTED = { ".": "775", open: "775", drop: "775", "open/w.txt": "664", "g.txt": "664" };

Deno.test({
  name: "put -r and get -r never make a file or folder writable by others on the receiving side",
  ignore: Deno.build.os === "windows",
  async fn() {
    await using work = await makeTempDir();
    await using server = await startServer();
    const src = `${work.path}/t`;
    await writeOpenTree(src);
    await ok(server, ["put", "-r", src, "up"]);
    assert.deepEqual(await modesOf(`${server.root}/up`), EXPECTED, "on the server");

    await writeOpenTree(`${server.root}/down`);
    await ok(server, ["get", "-r", "down", `${work.path}/down`]);
    assert.deepEqual(await modesOf(`${work.path}/down`), EXPECTED, "on the client");

    // A second run over a copy made world-writable since gives it the receiver's bits again.
    await Deno.chmod(`${work.path}/down/open`, 0o777);
    await Deno.utime(`${server.root}/down/open/w.txt`, new Date(), new Date(86_400_000));
    await ok(server, ["get", "-r", "down", `${work.path}/down`]);
    assert.deepEqual(await modesOf(`${work.path}/down`), EXPECTED, "on the client, again");
  },
});
