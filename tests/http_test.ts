/**
 * The HTTP side (`--http`, lib/http/) over real HTTP against the real server: fetch and curl for
 * downloads (ranges, validators, If-Range), listings (HTML escaped, JSON as `ferry list --json`),
 * uploads (staged, length and digest checked, no overwrite unless asked, resumable), the limits,
 * and access with a token (bearer, sign-in cookie, cross-site refusal, public read).
 */

import assert from "node:assert/strict";
import qrcode from "qrcode-generator";
import { serverAccessOf } from "../lib/server_access.ts";
import {
  assertRootHolds,
  assertUsageError,
  commandWorks,
  ferry,
  filesEqual,
  makeTempDir,
  makeTempFile,
  randomBytes,
  RESUME_DIR,
  runCommand,
  runServer,
  STAGING_DIR,
  startHttp,
  waitFor,
  waitForEmptyStaging,
  waitForStagingData,
  writeRandomFile,
} from "./harness.ts";

const decoder = new TextDecoder();

const HAS_CURL = await commandWorks("curl", ["--version"]);

async function curl(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const result = await runCommand("curl", ["-sS", "--max-time", "30", ...args]);
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: result.stderr };
}

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

Deno.test("http: listings show names escaped, and ?json is ferry list --json's", async () => {
  const { server, base } = await startHttp();
  await using _ = server;
  const hostile = `<img src=x onerror=alert(1)>&"'.txt`;
  await Deno.mkdir(`${server.root}/sub`);
  await Deno.writeTextFile(`${server.root}/sub/${hostile}`, "boo");
  await Deno.writeTextFile(`${server.root}/a b#c%.txt`, "hello");

  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  assert.match(page, /href="\/sub\/"/);
  assert.match(page, /href="\/a%20b%23c%25\.txt"/);
  const sub = await fetch(`${base}sub/`);
  assert.equal(sub.status, 200);
  const html = await sub.text();
  assert.ok(!html.includes("<img src=x"), "hostile name shown as markup");
  assert.ok(html.includes("&#60;img src=x onerror=alert(1)&#62;&#38;&#34;&#39;.txt"));
  assert.match(sub.headers.get("content-security-policy") ?? "", /default-src 'none'/);

  // A folder without its slash is sent to it.
  const bare = await fetch(`${base}sub`, { redirect: "manual" });
  assert.equal(bare.status, 301);
  assert.equal(bare.headers.get("location"), "/sub/");
  await bare.body?.cancel();

  // ?json is `ferry list --json` of the folder; with &recursive, `ferry list -r --json`; an
  // empty folder is listed in its parent.
  await Deno.mkdir(`${server.root}/sub/empty`);
  const listed = async (args: string[]) =>
    JSON.parse(decoder.decode((await ferry(server, ["list", "--json", ...args])).stdout));
  const json = await (await fetch(`${base}?json`)).json();
  assert.deepEqual(json, await listed([]));
  assert.deepEqual(json.map((e: { type: string }) => e.type), ["file", "dir"]);
  assert.deepEqual(await (await fetch(`${base}?json&recursive`)).json(), await listed(["-r"]));
  const accept = await fetch(`${base}sub/`, { headers: { accept: "application/json" } });
  const subJson = await accept.json();
  assert.deepEqual(subJson, await listed(["sub"]));
  assert.deepEqual(subJson.map((e: { name: string }) => e.name), [`sub/${hostile}`, "sub/empty"]);
  const subPage = await (await fetch(`${base}sub/`, { headers: { accept: "text/html" } })).text();
  assert.match(subPage, /href="\/sub\/empty\/"/);
  const missing = await fetch(`${base}nope/`);
  assert.equal(missing.status, 404);
  await missing.body?.cancel();
  await server.waitForLog(/http GET "sub\/" 200 \d+ bytes ok/);
  await server.waitForLog(/http GET "nope" 404 0 bytes refused/);
});

Deno.test("http: downloads with ranges, validators, If-Range and HEAD", async (t) => {
  const { server, base } = await startHttp();
  await using _ = server;
  const bytes = randomBytes(300_000);
  await Deno.writeFile(`${server.root}/f.bin`, bytes);
  const url = `${base}f.bin`;

  await t.step("GET and HEAD", async () => {
    const got = await fetch(url);
    assert.equal(got.status, 200);
    assert.deepEqual(new Uint8Array(await got.arrayBuffer()), bytes);
    const head = await fetch(url, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "300000");
    assert.equal(head.headers.get("accept-ranges"), "bytes");
    assert.match(head.headers.get("etag") ?? "", /^"[0-9a-f]+-[0-9a-f]+"$/);
    assert.ok(head.headers.get("last-modified"));
  });

  const etag = (await fetch(url, { method: "HEAD" })).headers.get("etag")!;

  await t.step("ranges", async () => {
    const part = await fetch(url, { headers: { range: "bytes=100-199" } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get("content-range"), "bytes 100-199/300000");
    assert.deepEqual(new Uint8Array(await part.arrayBuffer()), bytes.subarray(100, 200));
    const suffix = await fetch(url, { headers: { range: "bytes=-10" } });
    assert.deepEqual(new Uint8Array(await suffix.arrayBuffer()), bytes.subarray(-10));
    const beyond = await fetch(url, { headers: { range: "bytes=300000-" } });
    assert.equal(beyond.status, 416);
    assert.equal(beyond.headers.get("content-range"), "bytes */300000");
    await beyond.body?.cancel();
    const same = await fetch(url, { headers: { "if-none-match": etag } });
    assert.equal(same.status, 304);
    await same.body?.cancel();
  });

  await t.step(
    "If-Range with the current ETag resumes; with an old one, sends it all",
    async () => {
      const resumed = await fetch(url, { headers: { range: "bytes=1000-", "if-range": etag } });
      assert.equal(resumed.status, 206);
      assert.deepEqual(new Uint8Array(await resumed.arrayBuffer()), bytes.subarray(1000));
      const stale = await fetch(url, { headers: { range: "bytes=1000-", "if-range": '"1-1"' } });
      assert.equal(stale.status, 200);
      assert.deepEqual(new Uint8Array(await stale.arrayBuffer()), bytes);
    },
  );

  await t.step("curl -C - resumes; with If-Range it never stitches a changed file", async () => {
    if (!HAS_CURL) return console.log("  skipped: curl is missing");
    await using dir = await makeTempDir();
    const out = `${dir.path}/f.bin`;
    await Deno.writeFile(out, bytes.subarray(0, 123_456));
    const resumed = await curl(["-C", "-", "-o", out, url]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.deepEqual(await Deno.readFile(out), bytes);

    // The file changes on the server while the client holds an old prefix.
    await Deno.writeFile(out, bytes.subarray(0, 1000));
    await Deno.writeFile(`${server.root}/f.bin`, randomBytes(300_001));
    const stitched = await curl(["-C", "-", "-H", `If-Range: ${etag}`, "-o", out, url]);
    // curl refuses to resume when the server sends the whole (new) file: nothing is stitched.
    assert.notEqual(stitched.code, 0);
    assert.deepEqual(await Deno.readFile(out), bytes.subarray(0, 1000));
  });
});

Deno.test("http: names are resolved by the store: no traversal, no private folders", async (t) => {
  await using outside = await makeTempDir();
  await Deno.writeTextFile(`${outside.path}/secret.txt`, "secret");
  const { server, base } = await startHttp();
  await using _ = server;
  await Deno.symlink(outside.path, `${server.root}/out`);
  await Deno.symlink(`${outside.path}/secret.txt`, `${server.root}/secret-link`);
  await Deno.writeTextFile(`${server.root}/ok.txt`, "ok");

  const status = async (path: string, init: RequestInit = {}) => {
    const response = await fetch(base + path, init);
    await response.body?.cancel();
    return response.status;
  };
  await t.step("reads", async () => {
    for (
      const path of ["out/secret.txt", "secret-link", "out/", `${STAGING_DIR}/`, `${RESUME_DIR}/`]
    ) {
      const code = await status(path);
      assert.ok(code === 400 || code === 404, `${path}: ${code}`);
    }
    assert.equal(await status("a%2fb"), 400);
    assert.equal(await status("a%2Fb"), 400);
    assert.equal(await status("..%2fok.txt"), 400);
    assert.equal(await status("%00"), 400);
  });
  await t.step("curl --path-as-is cannot climb out either", async () => {
    if (!HAS_CURL) return console.log("  skipped: curl is missing");
    for (const path of ["../secret.txt", "%2e%2e/secret.txt", "sub/%2e%2e/%2e%2e/secret.txt"]) {
      const got = await curl([
        "--path-as-is",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        base + path,
      ]);
      assert.ok(["400", "404"].includes(got.stdout), `${path}: ${got.stdout}`);
    }
  });
  await t.step("writes", async () => {
    const put = (path: string) => status(path, { method: "PUT", body: "x" });
    assert.equal(await put("out/x.txt"), 400);
    assert.equal(await put(`${STAGING_DIR}/x`), 400);
    assert.equal(await put("a%2fb"), 400);
    assert.equal(await put("dir/"), 400);
    assert.deepEqual([...Deno.readDirSync(outside.path)].map((e) => e.name), ["secret.txt"]);
  });
});

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

Deno.test("http: with --token-file, bearer and sign-in cookie; cross-site refused", async (t) => {
  const token = "s3cret-token-0123456789abcdef";
  await using tokenFile = await makeTempFile(token + "\n");
  const { server, base } = await startHttp(["--token-file", tokenFile.path]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/f.txt`, "payload");
  const origin = new URL(base).origin;

  await t.step("no token: 401, a browser gets the form", async () => {
    const plain = await fetch(`${base}f.txt`);
    assert.equal(plain.status, 401);
    assert.match(plain.headers.get("www-authenticate") ?? "", /Bearer/);
    await plain.body?.cancel();
    const browser = await fetch(`${base}f.txt`, { headers: { accept: "text/html" } });
    assert.equal(browser.status, 401);
    assert.match(await browser.text(), /<form class="login" method="post" action="\/\?login">/);
    const wrong = await fetch(`${base}f.txt`, { headers: { authorization: "Bearer nope" } });
    assert.equal(wrong.status, 401);
    await wrong.body?.cancel();
    const put = await fetch(`${base}n.txt`, { method: "PUT", body: "x" });
    assert.equal(put.status, 401);
    await put.body?.cancel();
  });

  await t.step("bearer token", async () => {
    const auth = { authorization: `Bearer ${token}` };
    assert.equal(await (await fetch(`${base}f.txt`, { headers: auth })).text(), "payload");
    const put = await fetch(`${base}n.txt`, { method: "PUT", body: "x", headers: auth });
    assert.equal(put.status, 201);
    await put.body?.cancel();
  });

  await t.step("sign-in cookie: not the token, HttpOnly, SameSite=Strict", async () => {
    const form = (value: string) => new URLSearchParams({ token: value, next: "/f.txt" });
    const bad = await fetch(`${base}?login`, {
      method: "POST",
      body: form("wrong-token-wrong-token"),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(bad.status, 401);
    assert.match(await bad.text(), /Wrong token/);
    const cross = await fetch(`${base}?login`, {
      method: "POST",
      body: form(token),
      headers: { origin: "http://evil.example" },
      redirect: "manual",
    });
    assert.equal(cross.status, 403);
    await cross.body?.cancel();
    const good = await fetch(`${base}?login`, {
      method: "POST",
      body: form(token),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(good.status, 303);
    assert.equal(good.headers.get("location"), "/f.txt");
    await good.body?.cancel();
    const setCookie = good.headers.get("set-cookie") ?? "";
    assert.match(setCookie, /HttpOnly/);
    assert.match(setCookie, /SameSite=Strict/);
    assert.ok(!setCookie.includes(token), "the cookie carries the token");
    const cookie = setCookie.split(";")[0];

    assert.equal(await (await fetch(`${base}f.txt`, { headers: { cookie } })).text(), "payload");
    const forged = cookie.replace(/.$/, (c) => (c === "0" ? "1" : "0"));
    const refused = await fetch(`${base}f.txt`, { headers: { cookie: forged } });
    assert.equal(refused.status, 401);
    await refused.body?.cancel();

    // A change riding on the cookie must come from this server's own page.
    const csrf = await fetch(`${base}c.txt`, {
      method: "PUT",
      body: "x",
      headers: { cookie, origin: "http://evil.example" },
    });
    assert.equal(csrf.status, 403);
    await csrf.body?.cancel();
    const fetchSite = await fetch(`${base}c.txt`, {
      method: "PUT",
      body: "x",
      headers: { cookie, "sec-fetch-site": "cross-site" },
    });
    assert.equal(fetchSite.status, 403);
    await fetchSite.body?.cancel();
    const own = await fetch(`${base}c.txt`, {
      method: "PUT",
      body: "x",
      headers: { cookie, origin },
    });
    assert.equal(own.status, 201);
    await own.body?.cancel();

    const open = await fetch(`${base}?login`, {
      method: "POST",
      body: new URLSearchParams({ token, next: "//evil.example/" }),
      headers: { origin },
      redirect: "manual",
    });
    assert.equal(open.headers.get("location"), "/");
    await open.body?.cancel();
  });

  await t.step("a sign-in form without a length is read no further than its limit", async () => {
    // Anyone may post a sign-in form, so its body must not be held whole, however it is sent:
    // a chunked one (no Content-Length) that runs past the form limit is refused.
    let sent = 0;
    const chunk = new TextEncoder().encode("x".repeat(64 * 1024));
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        if (sent === 0) controller.enqueue(new TextEncoder().encode(`token=${token}&pad=`));
        // Bounded, so that a server reading it all ends too: 16 MiB.
        if (sent >= 256) return controller.close();
        sent++;
        controller.enqueue(chunk);
      },
    });
    const big = await fetch(`${base}?login`, {
      method: "POST",
      body,
      headers: { origin, "content-type": "application/x-www-form-urlencoded" },
      redirect: "manual",
    });
    assert.equal(big.status, 413);
    await big.body?.cancel();
    assert.ok(!big.headers.get("set-cookie"), "signed in with an oversized form");
  });
  await assertRootHolds(server.root, ["c.txt", "f.txt", "n.txt"]);
});

Deno.test("http: --http-public-read lets anyone read, uploads still need the token", async () => {
  const token = "another-token-0123456789abcdef";
  await using tokenFile = await makeTempFile(token);
  const { server, base } = await startHttp(["--token-file", tokenFile.path, "--http-public-read"]);
  await using _ = server;
  await Deno.writeTextFile(`${server.root}/f.txt`, "public");
  assert.equal(await (await fetch(`${base}f.txt`)).text(), "public");
  assert.equal((await (await fetch(`${base}?json`)).json()).length, 1);
  // Visitors see the listing and a way to sign in, not an upload area they cannot use yet.
  const page = await (await fetch(base, { headers: { accept: "text/html" } })).text();
  assert.match(page, /data-name="f.txt"/);
  assert.match(page, /href="\/\?login[^"]*">Sign in to upload/);
  assert.ok(!page.includes('id="upload"'), "an upload area before signing in");
  // Signing in from a folder comes back to that folder.
  await Deno.mkdir(`${server.root}/sub dir`);
  const sub = await (await fetch(`${base}sub%20dir/`, { headers: { accept: "text/html" } })).text();
  const link = /<a class="who" href="([^"]+)">Sign in to upload/.exec(sub);
  assert.ok(link, sub);
  const form = await (await fetch(new URL(link[1].replaceAll("&#38;", "&"), base))).text();
  const next = /name="next" value="([^"]*)"/.exec(form)?.[1];
  assert.equal(next, "/sub%20dir/");
  const signedIn = await fetch(`${base}?login`, {
    method: "POST",
    body: new URLSearchParams({ token, next: next! }),
    headers: { origin: new URL(base).origin },
    redirect: "manual",
  });
  assert.equal(signedIn.status, 303);
  assert.equal(signedIn.headers.get("location"), "/sub%20dir/");
  await signedIn.body?.cancel();
  const put = await fetch(`${base}n.txt`, { method: "PUT", body: "x" });
  assert.equal(put.status, 401);
  await put.body?.cancel();
  const authed = await fetch(`${base}n.txt`, {
    method: "PUT",
    body: "x",
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(authed.status, 201);
  await authed.body?.cancel();
});

Deno.test("http: requests over --max-connections are answered 503", async () => {
  const { server, base } = await startHttp(["--max-connections", "1"]);
  await using _ = server;
  await writeRandomFile(`${server.root}/big.bin`, 8 << 20);
  // One download held open, read no further than its first chunk.
  const held = await fetch(`${base}big.bin`);
  const reader = held.body!.getReader();
  await reader.read();
  const busy = await fetch(`${base}?json`);
  assert.equal(busy.status, 503);
  assert.equal(busy.headers.get("retry-after"), "5");
  await busy.body?.cancel();
  await reader.cancel();
  await waitFor("the held download to end", async () => {
    const again = await fetch(`${base}?json`);
    await again.body?.cancel();
    return again.status === 200;
  });
});

Deno.test("http: with TLS, the HTTP side is HTTPS with the same certificate", async () => {
  if (!HAS_CURL) return console.log("  skipped: curl is missing");
  await using dir = await makeTempDir();
  // --tls: the server makes its own certificate, kept in the state folder, which curl trusts.
  await Deno.writeTextFile(`${dir.path}/token`, "tls-token-0123456789abcdef");
  const { server, base } = await startHttp([
    "--tls",
    "--state-dir",
    `${dir.path}/state`,
    "--token-file",
    `${dir.path}/token`,
  ]);
  await using _ = server;
  assert.match(base, /^https:\/\//);
  // curl trusts the certificate alone: the state folder's file also holds the private key.
  const identity = await Deno.readTextFile(`${dir.path}/state/tls-identity.pem`);
  const certificate = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/.exec(
    identity,
  );
  assert.ok(certificate, "no certificate in the identity file");
  await Deno.writeTextFile(`${dir.path}/ferry.crt`, certificate[0]);
  await Deno.writeTextFile(`${server.root}/t.txt`, "over tls");
  const got = await curl([
    "--cacert",
    `${dir.path}/ferry.crt`,
    "-H",
    "Authorization: Bearer tls-token-0123456789abcdef",
    `${base}t.txt`,
  ]);
  assert.equal(got.code, 0, got.stderr);
  assert.equal(got.stdout, "over tls");
  // docs/http.md's recipe: fetch the certificate with openssl and check its fingerprint against
  // the one the server printed, in the same form.
  if (await commandWorks("openssl", ["version"])) {
    const { hostname, port } = new URL(base);
    const fetched = await runCommand("sh", [
      "-c",
      `openssl s_client -connect ${hostname}:${port} </dev/null 2>/dev/null | openssl x509 ` +
      "| openssl x509 -outform der | openssl dgst -sha256 -binary | base64 | tr -d '='",
    ]);
    const printed = (await server.waitForLog(/TLS certificate SHA256:/)).match(
      /SHA256:[A-Za-z0-9+/]{43}/,
    )![0];
    assert.equal(`SHA256:${decoder.decode(fetched.stdout).trim()}`, printed);
  } else console.log("  openssl missing: the fingerprint recipe is not checked");
  // Plain HTTP to the HTTPS port gets nothing.
  const plain = await curl(["-o", "/dev/null", base.replace("https:", "http:") + "t.txt"]);
  assert.notEqual(plain.code, 0);
  // The sign-in cookie is marked Secure over HTTPS.
  const login = await curl([
    "--cacert",
    `${dir.path}/ferry.crt`,
    "-D",
    "-",
    "-o",
    "/dev/null",
    "-H",
    `Origin: ${new URL(base).origin}`,
    "--data",
    "token=tls-token-0123456789abcdef",
    `${base}?login`,
  ]);
  assert.match(login.stdout, /set-cookie: ferry_session=[^\r\n]*; Secure/i);
});

Deno.test("http: command line: --http parses, --http-public-read needs a token", async () => {
  const bad = await runServer(["--http", "x:y:z"]);
  assertUsageError(bad, "ferry-server", { what: "bad", pattern: /Invalid --http/ });
  const orphan = await runServer(["--http", "0", "--http-public-read"]);
  assertUsageError(orphan, "ferry-server", {
    what: "orphan",
    pattern: /--http-public-read needs --token-file/,
  });
  // An HTTP port in use: one line naming it, and nothing left running.
  using taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await using root = await makeTempDir();
  const busy = await runServer([
    "0",
    "--root",
    root.path,
    "--http",
    `127.0.0.1:${(taken.addr as Deno.NetAddr).port}`,
  ]);
  assert.equal(busy.code, 1, busy.stderr);
  assert.match(
    busy.stderr,
    new RegExp(
      `Cannot serve HTTP on 127\\.0\\.0\\.1:${
        (taken.addr as Deno.NetAddr).port
      }: address already in use`,
    ),
  );
  assert.equal(busy.stderr.trim().split("\n").length, 1, busy.stderr);
  const qr = await runServer(["--http-qr"]);
  assertUsageError(qr, "ferry-server", { what: "qr", pattern: /--http-qr needs --http/ });
  const alone = await runServer(["--http-public-read"]);
  assertUsageError(alone, "ferry-server", {
    what: "alone",
    pattern: /--http-public-read needs --http/,
  });
});

Deno.test("http: --http-archives streams a folder as tar, long and non-ASCII names intact", async () => {
  const { server, base } = await startHttp(["--http-archives"]);
  await using _ = server;
  const long = "d".repeat(60) + "/" + "n".repeat(120) + ".bin";
  const files: Record<string, Uint8Array<ArrayBuffer>> = {
    "a.txt": randomBytes(0),
    "sub/b.bin": randomBytes(513),
    "sub/Grüße ✓.txt": randomBytes(1000),
    [long]: randomBytes(70_000),
  };
  for (const [name, bytes] of Object.entries(files)) {
    await Deno.mkdir(`${server.root}/share/${name}`.replace(/\/[^/]+$/, ""), { recursive: true });
    await Deno.writeFile(`${server.root}/share/${name}`, bytes);
  }
  await Deno.writeTextFile(`${server.root}/outside-share.txt`, "not in the archive");
  const response = await fetch(`${base}share/?tar`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("content-type"), "application/x-tar");
  assert.match(response.headers.get("content-disposition") ?? "", /share\.tar/);
  await using dir = await makeTempDir();
  await Deno.writeFile(`${dir.path}/share.tar`, new Uint8Array(await response.arrayBuffer()));
  const extracted = await runCommand("tar", ["-xf", "share.tar"], { cwd: dir.path });
  assert.equal(extracted.code, 0, extracted.stderr);
  for (const [name, bytes] of Object.entries(files)) {
    assert.deepEqual(await Deno.readFile(`${dir.path}/share/${name}`), bytes, name);
  }
  assert.ok(!(await Deno.stat(`${dir.path}/share/outside-share.txt`).catch(() => null)));
  await server.waitForLog(/http GET "share\/" 200 \d+ bytes tar of 4 files: ok/);

  // Off by default.
  const { server: plain, base: plainBase } = await startHttp();
  await using _plain = plain;
  const refused = await fetch(`${plainBase}?tar`);
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
});

Deno.test("http: --http-qr prints the page's address as a QR code a phone can scan", async () => {
  const { server, base } = await startHttp(["--http-qr"]);
  await using _ = server;
  const said = await server.waitForLog(/scan to open /);
  assert.ok(said.includes(`scan to open ${base} (this machine only`), said);
  // The code, read back from its half blocks (stderr is no terminal: light modules are drawn).
  const code = qrcode(0, "M");
  code.addData(base, "Byte");
  code.make();
  const count = code.getModuleCount();
  const size = count + 8;
  const at = server.lines.indexOf(said) + 1;
  await waitFor("the whole code", () => server.lines.length >= at + Math.ceil(size / 2));
  const light: boolean[][] = [];
  for (const line of server.lines.slice(at, at + Math.ceil(size / 2))) {
    const chars = [...line];
    assert.equal(chars.length, size, `a line of the code: ${JSON.stringify(line)}`);
    light.push(chars.map((c) => c === "█" || c === "▀"), chars.map((c) => c === "█" || c === "▄"));
  }
  const dark = (r: number, c: number) => !light[r + 4][c + 4];
  for (let r = -4; r < count + 4; r++) {
    for (let c = -4; c < count + 4; c++) {
      const inside = r >= 0 && c >= 0 && r < count && c < count;
      assert.equal(dark(r, c), inside && code.isDark(r, c), `module ${r},${c}`);
    }
  }
  // `deno task serve` lets the server list this machine's addresses for it, and only for it.
  assert.deepEqual((await serverAccessOf({ root: server.root, httpQr: true })).sys, [
    "networkInterfaces",
  ]);
  assert.equal((await serverAccessOf({ root: server.root })).sys, undefined);
  // The three finder patterns the QR standard puts in the corners: a dark ring, a light ring,
  // a dark 3x3 core.
  for (const [top, left] of [[0, 0], [0, count - 7], [count - 7, 0]]) {
    for (let r = 0; r < 7; r++) {
      for (let c = 0; c < 7; c++) {
        const ring = Math.max(Math.abs(r - 3), Math.abs(c - 3));
        assert.equal(dark(top + r, left + c), ring !== 2, `finder at ${top},${left}`);
      }
    }
  }
});
