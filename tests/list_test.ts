/**
 * Integration tests of the client's `list`: `-r` names sorted one per line without staging
 * files, `--json` with name, size and mtime, and `--long` with a total.
 *
 * @module
 */

import assert from "node:assert/strict";
import { assertSuccess, ferry, randomBytes, STAGING_DIR, startServer } from "./harness.ts";

Deno.test("list -r prints one name per line, sorted, and never staging files", async () => {
  await using server = await startServer();
  const names = ["b.txt", "a.txt", "Zeta.bin", "sub/inner.txt", "c d.txt"];
  for (const name of names) {
    assertSuccess(await ferry(server, ["put", "-", name], { stdin: name }), `put ${name}`);
  }
  // Something an upload in progress would leave in the staging folder.
  await Deno.writeFile(`${server.root}/${STAGING_DIR}/leftover.upload`, new Uint8Array(10));

  const listed = await ferry(server, ["list", "-r"]);
  assertSuccess(listed, "list");
  const text = new TextDecoder().decode(listed.stdout);
  // Folders are listed too, marked with a trailing "/".
  const sorted = [...names, "sub/"].sort();
  assert.equal(text, sorted.map((name) => `${name}\n`).join(""));
  assert.doesNotMatch(text, /ferry-staging|leftover/);
  assert.equal(listed.stderr, "", "list prints nothing but the names");

  // An empty root lists as nothing at all.
  await using empty = await startServer();
  const none = await ferry(empty, ["list"]);
  assertSuccess(none, "list of an empty root");
  assert.equal(none.stdout.length, 0);
});

Deno.test("list --json gives the name, size and mtime of every file", async () => {
  await using server = await startServer();
  const files: Record<string, number> = { "one.bin": 1, "empty.bin": 0, "big.bin": 300000 };
  for (const [name, size] of Object.entries(files)) {
    assertSuccess(await ferry(server, ["put", "-", name], { stdin: randomBytes(size) }), name);
  }
  await Deno.writeFile(`${server.root}/${STAGING_DIR}/hidden.upload`, new Uint8Array(5));

  const listed = await ferry(server, ["list", "--json"]);
  assertSuccess(listed, "list --json");
  const entries = JSON.parse(new TextDecoder().decode(listed.stdout));
  assert.ok(Array.isArray(entries));
  assert.deepEqual(entries.map((e: { name: string }) => e.name), Object.keys(files).sort());
  for (const entry of entries) {
    assert.deepEqual(Object.keys(entry).sort(), ["mtime", "name", "size", "type"]);
    assert.equal(entry.type, "file");
    assert.equal(entry.size, files[entry.name], `size of ${entry.name}`);
    // mtime may be milliseconds or an ISO date; either way it must be the file's real mtime.
    const ms = typeof entry.mtime === "number" ? entry.mtime : Date.parse(entry.mtime);
    assert.ok(Number.isFinite(ms), `mtime of ${entry.name}: ${entry.mtime}`);
    const actual = (await Deno.stat(`${server.root}/${entry.name}`)).mtime!.getTime();
    assert.ok(Math.abs(ms - actual) < 1000, `mtime of ${entry.name}: ${entry.mtime}`);
  }
});

Deno.test("list --long gives size, date and name per line, then a total", async () => {
  await using server = await startServer();
  assertSuccess(await ferry(server, ["put", "-", "a b.txt"], { stdin: randomBytes(2048) }), "a");
  const single = await ferry(server, ["list", "-l"]);
  assertSuccess(single, "list -l");
  assert.match(new TextDecoder().decode(single.stdout), /a b\.txt\n1 file, 2\.00 KiB\n$/);
  assertSuccess(await ferry(server, ["put", "-", "sub/z.bin"], { stdin: randomBytes(3) }), "z");
  const listed = await ferry(server, ["list", "--long", "-r"]);
  assertSuccess(listed, "list --long");
  const lines = new TextDecoder().decode(listed.stdout).split("\n");
  // Sizes are right-aligned to one width; dates are local time, so only their shape is checked.
  const date = "\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d";
  assert.match(lines[0], new RegExp(`^2\\.00 KiB  ${date}  a b\\.txt$`));
  assert.match(lines[1], new RegExp(`^       -  ${date}  sub/$`));
  assert.match(lines[2], new RegExp(`^     3 B  ${date}  sub/z\\.bin$`));
  assert.equal(lines[3], "2 files, 1 folder, 2.00 KiB");
  assert.equal(lines[4], "");
  assert.equal(lines.length, 5);
});
