/**
 * The HTTP side's uploads over real HTTP against the real server: staged, length and digest
 * checked, never replacing a file unless asked, resumable with Content-Range, refused by
 * `--read-only`, and cut when idle.
 *
 * @module
 */

import assert from "node:assert/strict";
import {
  assertRootHolds,
  filesEqual,
  makeTempDir,
  randomBytes,
  startHttp,
  waitForEmptyStaging,
  waitForStagingData,
} from "./harness.ts";
import { curl, HAS_CURL } from "./http_harness.ts";

/**
 * Opens a raw connection to the HTTP side and sends a PUT's head with `Content-Length: length`
 * and then `body`, without the rest: an upload the test can cut or leave idle.
 */
async function rawPut(
  base: string,
  path: string,
  length: number,
  body: Uint8Array,
): Promise<Deno.Conn> {
  const url = new URL(base);
  const conn = await Deno.connect({ hostname: url.hostname, port: Number(url.port) });
  const head = `PUT /${path} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Length: ${length}\r\n\r\n`;
  const bytes = new Uint8Array([...new TextEncoder().encode(head), ...body]);
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
  return conn;
}

async function sha256(bytes: Uint8Array<ArrayBuffer>): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  return btoa(String.fromCharCode(...digest));
}

Deno.test("http: uploads are staged, checked and never replace a file unless asked", async (t) => {
  const { server, base } = await startHttp(["--max-size", "2M"]);
  await using _ = server;
  const bytes = randomBytes(200_000);

  await t.step("PUT stores; a second PUT is refused; ?overwrite replaces", async () => {
    const first = await fetch(`${base}d/x.bin`, { method: "PUT", body: bytes });
    assert.equal(first.status, 201, await first.text());
    assert.deepEqual(await Deno.readFile(`${server.root}/d/x.bin`), bytes);
    const again = await fetch(`${base}d/x.bin`, { method: "PUT", body: "other" });
    assert.equal(again.status, 409);
    assert.match(await again.text(), /File exists.*\?overwrite/);
    const ifNone = await fetch(`${base}d/x.bin`, {
      method: "PUT",
      body: "other",
      headers: { "if-none-match": "*" },
    });
    assert.equal(ifNone.status, 412);
    await ifNone.body?.cancel();
    assert.deepEqual(await Deno.readFile(`${server.root}/d/x.bin`), bytes);
    const replaced = await fetch(`${base}d/x.bin?overwrite`, { method: "PUT", body: "other" });
    assert.equal(replaced.status, 201);
    await replaced.body?.cancel();
    assert.equal(await Deno.readTextFile(`${server.root}/d/x.bin`), "other");
    const ifMatch = await fetch(`${base}d/x.bin`, {
      method: "PUT",
      body: "third",
      headers: { "if-match": "*" },
    });
    assert.equal(ifMatch.status, 201);
    await ifMatch.body?.cancel();
    const ifMatchMissing = await fetch(`${base}d/none.bin`, {
      method: "PUT",
      body: "third",
      headers: { "if-match": "*" },
    });
    assert.equal(ifMatchMissing.status, 412);
    await ifMatchMissing.body?.cancel();
  });

  await t.step("digests are verified; a mismatch leaves nothing", async () => {
    const good = await fetch(`${base}dig.bin`, {
      method: "PUT",
      body: bytes,
      headers: { "content-digest": `sha-256=:${await sha256(bytes)}:` },
    });
    assert.equal(good.status, 201, await good.text());
    const other = randomBytes(10);
    const bad = await fetch(`${base}bad.bin`, {
      method: "PUT",
      body: bytes,
      headers: { "repr-digest": `sha-256=:${await sha256(other)}:` },
    });
    assert.equal(bad.status, 400);
    assert.match(await bad.text(), /does not match/);
    const unknown = await fetch(`${base}bad.bin`, {
      method: "PUT",
      body: bytes,
      headers: { "content-digest": "md5=:AAAA:" },
    });
    assert.equal(unknown.status, 400);
    await unknown.body?.cancel();
    await waitForEmptyStaging(server.root);
    assert.ok(!(await Deno.stat(`${server.root}/bad.bin`).catch(() => null)));
  });

  await t.step("--max-size refuses by Content-Length and by what arrives", async () => {
    const big = randomBytes(3 << 20);
    const told = await fetch(`${base}big.bin`, { method: "PUT", body: big });
    assert.equal(told.status, 413);
    await told.body?.cancel();
    // A body without a length (a stream) is cut where it passes the limit.
    const stream = new Blob([big]).stream();
    const streamed = await fetch(`${base}big.bin`, { method: "PUT", body: stream });
    assert.equal(streamed.status, 413);
    await streamed.body?.cancel();
    await waitForEmptyStaging(server.root);
    assert.ok(!(await Deno.stat(`${server.root}/big.bin`).catch(() => null)));
  });

  await t.step("curl -T FILE URL/ uploads as FILE", async () => {
    if (!HAS_CURL) return console.log("  skipped: curl is missing");
    await using dir = await makeTempDir();
    await Deno.writeFile(`${dir.path}/c.bin`, bytes);
    const sent = await curl(["-f", "-T", `${dir.path}/c.bin`, `${base}d/`]);
    assert.equal(sent.code, 0, sent.stderr);
    assert.match(sent.stdout, /Stored "d\/c.bin": 200000 bytes/);
    assert.ok(await filesEqual(`${dir.path}/c.bin`, `${server.root}/d/c.bin`));
  });
  await server.waitForLog(/http PUT "d\/x.bin" 201 200000 bytes ok/);
});

Deno.test("http: a cut upload leaves nothing; a long one is kept and resumed with Content-Range", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const size = 4 << 20;
  const bytes = randomBytes(size);

  // A short body that stops: the client goes away mid-body.
  const short = await rawPut(base, "short.bin", size, bytes.subarray(0, 1000));
  await waitForStagingData(server.root, 1000);
  short.close();
  await server.waitForLog(/http PUT "short.bin" \d+ 1000 bytes interrupted, discarded/);
  await waitForEmptyStaging(server.root);
  await assertRootHolds(server.root, []);

  // A long one, cut after 2 MiB, is kept for a resume.
  const long = await rawPut(base, "long.bin", size, bytes.subarray(0, 2 << 20));
  await waitForStagingData(server.root, 2 << 20);
  long.close();
  await server.waitForLog(/http PUT "long.bin" \d+ \d+ bytes interrupted, kept for resume/);
  const probe = await fetch(`${base}long.bin?resume`, { method: "HEAD" });
  assert.equal(probe.status, 200);
  const offset = Number(probe.headers.get("upload-offset"));
  assert.equal(offset, 2 << 20);
  assert.equal(probe.headers.get("upload-length"), String(size));
  await assertRootHolds(server.root, [], { allowKept: true });

  // Resuming at the wrong offset is refused and keeps what is kept.
  const wrong = await fetch(`${base}long.bin`, {
    method: "PUT",
    body: bytes.subarray(5),
    headers: { "content-range": `bytes 5-${size - 1}/${size}` },
  });
  assert.equal(wrong.status, 416);
  assert.equal(wrong.headers.get("upload-offset"), String(offset));
  await wrong.body?.cancel();

  if (HAS_CURL) {
    await using dir = await makeTempDir();
    await Deno.writeFile(`${dir.path}/long.bin`, bytes);
    const digest = await sha256(bytes);
    const resumed = await curl([
      "-f",
      "-C",
      String(offset),
      "-T",
      `${dir.path}/long.bin`,
      "-H",
      `Repr-Digest: sha-256=:${digest}:`,
      base,
    ]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stdout, /resumed from 2097152/);
  } else {
    const resumed = await fetch(`${base}long.bin`, {
      method: "PUT",
      body: bytes.subarray(offset),
      headers: {
        "content-range": `bytes ${offset}-${size - 1}/${size}`,
        "repr-digest": `sha-256=:${await sha256(bytes)}:`,
      },
    });
    assert.equal(resumed.status, 201, await resumed.text());
  }
  assert.deepEqual(await Deno.readFile(`${server.root}/long.bin`), bytes);
  await assertRootHolds(server.root, ["long.bin"]);
});

Deno.test("http: a body cut between two write batches keeps every byte that arrived", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const size = 4 << 20;
  // Not on a 1 MiB batch boundary, nor a multiple of Deno's 64 KiB pieces.
  const sent = (3 << 19) + 12_345;
  const bytes = randomBytes(size);
  const conn = await rawPut(base, "cut.bin", size, bytes.subarray(0, sent));
  // The end of the stream comes after every byte sent: the server reads them all, then the cut.
  await conn.closeWrite();
  await server.waitForLog(
    new RegExp(`http PUT "cut.bin" \\d+ ${sent} bytes interrupted, kept for resume at ${sent}`),
  );
  conn.close();
  const probe = await fetch(`${base}cut.bin?resume`, { method: "HEAD" });
  assert.equal(probe.headers.get("upload-offset"), String(sent));
  const resumed = await fetch(`${base}cut.bin`, {
    method: "PUT",
    body: bytes.subarray(sent),
    headers: { "content-range": `bytes ${sent}-${size - 1}/${size}` },
  });
  assert.equal(resumed.status, 201, await resumed.text());
  assert.deepEqual(await Deno.readFile(`${server.root}/cut.bin`), bytes);
});

Deno.test("http: --read-only refuses uploads and still serves", async () => {
  const { server, base } = await startHttp(["--read-only"]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/r.txt`, "read me");
  const put = await fetch(`${base}w.txt`, { method: "PUT", body: "x" });
  assert.equal(put.status, 403);
  assert.match(await put.text(), /read-only/);
  assert.equal(await (await fetch(`${base}r.txt`)).text(), "read me");
  // The page offers no upload that would only be refused.
  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  assert.match(page, /data-name="r.txt"/);
  assert.ok(!page.includes('id="upload"'), "an upload area on a read-only server");
  const other = await fetch(`${base}r.txt`, { method: "PATCH" });
  assert.equal(other.status, 405);
  await other.body?.cancel();
  const remove = await fetch(`${base}r.txt`, { method: "DELETE" });
  assert.equal(remove.status, 403, "changes to the tree: tests/http_tree_test.ts");
  await remove.body?.cancel();
  await assertRootHolds(server.root, ["r.txt"]);
});

Deno.test("http: an upload idle for the idle timeout is cut and discarded", async () => {
  const { server, base } = await startHttp(["--idle-timeout", "1"]);
  await using _ = server;
  using _conn = await rawPut(base, "slow.bin", 100_000, randomBytes(5000));
  await server.waitForLog(
    /http PUT "slow.bin" \d+ 5000 bytes interrupted, discarded \(idle for 1 s\)/,
  );
  await waitForEmptyStaging(server.root);
  await assertRootHolds(server.root, []);
});
